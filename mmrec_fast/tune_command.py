"""``mmrec-fast tune``: a budgeted hyper-parameter search on validation carved from train, then a saved model.

The search (:func:`mmrec_fast.pipeline.tune`) sees the training part of the split only; the chosen
settings and every trial are saved in the model's metadata (``metadata["tuning"]``). The command
reports validation scores only: the held-out test metrics come from ``mmrec-fast evaluate --model``,
a separate step, so a tuning run cannot read the test split even by accident.
"""

from __future__ import annotations

import argparse
import json

import scipy.sparse as sp

__all__ = ["add_tune_parser", "cmd_tune"]


def add_tune_parser(sub, add_data_flags, positive_int, positive_float, add_overwrite_flag) -> argparse.ArgumentParser:
    """Register the ``tune`` subcommand on ``sub`` (the CLI's subparsers) with the CLI's shared flags."""
    p = sub.add_parser(
        "tune",
        help="search a model's settings on validation carved from train, save the best",
        description="Seeded, budgeted search (random order over a small grid, the defaults "
        "first) scored on a share of the TRAINING entries; the best setting is "
        "refit on all of train and saved with its trials in the model's metadata. "
        "Test metrics: run `mmrec-fast evaluate --model OUT` afterwards.",
    )
    # Checked in cmd_tune against pipeline.MODEL_KINDS (importing it here would load torch for --help).
    p.add_argument("--model", default="ials", help="model kind, one of pipeline.MODEL_KINDS (default ials)")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--trials", type=positive_int, default=12, help="most settings tried (default 12)")
    p.add_argument("--seconds", type=positive_float, help="wall-clock budget of the search (default none)")
    p.add_argument("--seed", type=int, default=0, help="seeds the validation draw, the search and the fits")
    p.add_argument(
        "--val-fraction",
        dest="val_fraction",
        type=positive_float,
        default=0.1,
        help="share of the training entries held out for validation (default 0.1)",
    )
    p.add_argument("--json", help="also write the trials to this JSON file")
    add_data_flags(p)
    add_overwrite_flag(p, "--out")
    return p


def cmd_tune(args) -> int:
    """Search, refit the best on all of train, save it with ``metadata["tuning"]``."""
    from . import commands
    from ._outputs import check_output_file, write_file_atomically
    from .models import save_model
    from .pipeline import item_titles, train_model

    out_dir = commands.check_model_out(args, "--overwrite")
    if args.json:
        check_output_file(args.json, argument="--json", overwrite=args.overwrite, inputs=[args.config, args.data])
    if not 0 < args.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    commands.check_device(args.device)
    config = commands.load_config(args.config) if args.config else {}
    data, split, split_cfg, data_options = commands._data_and_split(args, config)
    # Only the training part of the split is read from here on.
    train, relevance = commands.training_part(split, split_cfg)
    features, blocks = commands.content_features(args, data, out_dir)
    budget = {"trials": args.trials, "seconds": args.seconds}
    model = train_model(
        args.model,
        data.n_users,
        data.n_items,
        train,
        features=features,
        feature_blocks=blocks,
        tune=True,
        budget=budget,
        seed=args.seed,
        val_fraction=args.val_fraction,
        relevance=relevance,
        progress=not args.no_progress,
        log=print,
    )
    tuning = model.tuning
    binary = split.train_matrix
    labels = json.dumps(item_titles(data))
    out = save_model(
        model,
        out_dir,
        user_map=data.user_map,
        item_map=data.item_map,
        overwrite=args.overwrite,
        metadata={"data": data_options, "split": split_cfg, "all_data": False, "tuning": tuning},
        extra_files={
            "train_matrix.npz": lambda path: sp.save_npz(path, binary),
            "item_labels.json": lambda path: path.write_text(labels, encoding="utf-8"),
        },
    )
    best = max(tuning["trials"], key=lambda t: (t["score"], -t["index"]))
    print(f"best of {len(tuning['trials'])} trials: {tuning['params']} (validation ndcg@10 {best['score']:.4f})")
    print(f"saved tuned {args.model} model to {out}; test metrics: mmrec-fast evaluate --model {out}")
    if args.json:
        text = json.dumps(tuning, indent=2)
        write_file_atomically(args.json, lambda path: path.write_text(text, encoding="utf-8"))
    return 0
