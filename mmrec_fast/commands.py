"""What the ``mmrec-fast`` subcommands do (argument parsing lives in :mod:`mmrec_fast.cli`)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["load_config", "load_data", "cmd_demo", "cmd_train", "cmd_evaluate", "cmd_recommend", "cmd_bench"]

_TRAIN_FLAGS = ("dim", "content_dim", "loss", "n_negatives", "epochs", "batch_size", "lr", "reg", "patience", "seed")


def load_config(path) -> dict:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config file into a dict.

    Sections: ``[data]`` (``source``, ``format``, ``user_col``, ``item_col``, ``rating_col``,
    ``time_col``), ``[split]`` (``test_size``, ``seed``, ``relevance``), ``[train]`` (any
    :class:`~mmrec_fast.models.TrainConfig` field), ``[hybrid]`` (overrides for the hybrid).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config: no such file {str(path)!r}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        config = tomllib.loads(text)
    elif path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        config = yaml.safe_load(text) or {}
    else:
        raise ValueError(f"--config: use a .toml, .yaml or .yml file, got {path.name!r}")
    unknown = sorted(set(config) - {"data", "split", "train", "hybrid"})
    if unknown:
        raise ValueError(f"--config: unknown section(s) {unknown}; known: data, split, train, hybrid")
    return config


def load_data(source: str, *, fmt: str | None = None, user_col="user", item_col="item", rating_col=None,
              time_col=None):
    """``"ml-100k"`` (the copy inside recbole), a GroupLens directory, or a CSV/TSV/Parquet log."""
    from .data import load_grouplens, load_interactions, load_movielens_100k

    if source in ("ml-100k", "movielens-100k"):
        return load_movielens_100k()
    path = Path(source)
    if fmt == "grouplens" or (fmt is None and path.is_dir()):
        return load_grouplens(path)
    if not path.exists():
        raise ValueError(f"--data: {source!r} is neither 'ml-100k' nor an existing file or directory")
    return load_interactions(path, user_col=user_col, item_col=item_col, rating_col=rating_col, time_col=time_col)


def _train_config(args, config: dict, section: str = "train"):
    from .models import TrainConfig

    values = dict(config.get("train", {}))
    if section != "train":
        values.update(config.get(section, {}))
    if section == "hybrid":
        values.setdefault("loss", "softmax")  # the pipeline's hybrid default (see default_hybrid_config)
    for flag in _TRAIN_FLAGS:
        value = getattr(args, flag, None)
        if value is not None:
            values[flag] = value
    values.setdefault("device", getattr(args, "device", "cpu"))
    values.setdefault("progress", not getattr(args, "no_progress", False))
    return TrainConfig.from_dict(values)


def _data_and_split(args, config: dict):
    from .pipeline import make_eval_split

    data_cfg = {**config.get("data", {})}
    source = args.data or data_cfg.pop("source", "ml-100k")
    data_cfg.pop("source", None)
    if source not in ("ml-100k", "movielens-100k") and Path(source).exists():
        source = str(Path(source).resolve())  # saved with the model: must work from any directory
    for key in ("user_col", "item_col", "rating_col", "time_col"):
        if getattr(args, key, None) is not None:
            data_cfg[key] = getattr(args, key)
    fmt = data_cfg.pop("format", None)
    data = load_data(source, fmt=fmt, **data_cfg)
    data_options = {"source": source, "format": fmt, **data_cfg}
    split_cfg = {"test_size": 0.2, "seed": 123, "relevance": 4.0 if data.ratings is not None else None,
                 **config.get("split", {})}
    for key in ("test_size", "seed_split", "relevance"):
        value = getattr(args, key, None)
        if value is not None:
            split_cfg["seed" if key == "seed_split" else key] = value
    return data, make_eval_split(data, **split_cfg), split_cfg, data_options


def cmd_demo(args) -> int:
    """MovieLens-100K end to end (or the synthetic engine demo with ``--synthetic``)."""
    if args.synthetic:
        from .demo import run_synthetic_demo

        return run_synthetic_demo(n_users=args.users, n_items=args.items, dim=args.dim, k=args.k,
                                  seed=args.seed, show=args.show)
    from .data import load_movielens_100k
    from .models import TrainConfig
    from .pipeline import run_experiment

    started = time.perf_counter()
    data = load_movielens_100k()
    print(f"MovieLens-100K: {data}")
    config = TrainConfig(device=args.device, progress=not args.no_progress)
    run_experiment(data, config=config, out_dir=args.out, device=args.device, progress=not args.no_progress)
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return 0


def cmd_train(args) -> int:
    """Train one model on the split's training part and save it (with its training matrix and labels)."""
    from .evaluation import evaluate_model
    from .models import save_model
    from .pipeline import item_texts, item_titles, text_features, train_model

    config = load_config(args.config) if args.config else {}
    data, split, split_cfg, data_options = _data_and_split(args, config)
    train = split.train_matrix
    if args.all_data:
        train = data.to_csr("ones", duplicates="sum")
        train.data[:] = 1.0
    features = blocks = None
    if args.model in ("hybrid", "content"):
        if data.item_features is None:
            raise ValueError(f"--model {args.model}: the data has no item side information to embed")
        features = text_features(item_texts(data), cache_dir=Path(args.out).parent / ".mmrec_cache",
                                 device=args.device, progress=not args.no_progress)
        blocks = {"text": (0, features.shape[1])}
    model = train_model(args.model, data.n_users, data.n_items, train,
                        _train_config(args, config, "hybrid" if args.model == "hybrid" else "train"),
                        features=features, feature_blocks=blocks)
    out = save_model(model, args.out, user_map=data.user_map, item_map=data.item_map,
                     metadata={"data": data_options, "split": split_cfg, "all_data": bool(args.all_data)})
    sp.save_npz(out / "train_matrix.npz", train)
    (out / "item_labels.json").write_text(json.dumps(item_titles(data)), encoding="utf-8")
    print(f"saved {args.model} model to {out}")
    if not args.all_data:
        metrics = evaluate_model(model, split.positives, exclude=split.exclude, ks=(5, 10, 20))
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}, indent=1))
    return 0


def cmd_evaluate(args) -> int:
    """Evaluate a saved model on the test part of the same (re-created, deterministic) split."""
    from .evaluation import evaluate_model
    from .models import load_model
    from .pipeline import format_table

    saved = load_model(args.model, device="cpu")
    config = load_config(args.config) if args.config else {}
    if args.data is None and "source" not in config.get("data", {}):
        # Same data and split as training, unless the user says otherwise.
        saved_data = dict(saved.metadata.get("data", {"source": "ml-100k"}))
        config["data"] = {k: v for k, v in saved_data.items() if v is not None}
    split_saved = saved.metadata.get("split", {})
    config.setdefault("split", {}).update({k: v for k, v in split_saved.items() if k not in config["split"]})
    data, split, _, _ = _data_and_split(args, config)
    if saved.item_map is not None and saved.item_map != data.item_map:
        raise ValueError("--data: its item ids differ from the ones the model was trained on")
    if saved.metadata.get("all_data"):
        print("warning: this model was trained on all data (--all-data); its test metrics are not held-out",
              file=sys.stderr)
    ks = tuple(args.k)
    started = time.perf_counter()
    metrics = evaluate_model(saved.model, split.positives, exclude=split.exclude, ks=ks)
    seconds = time.perf_counter() - started
    columns = [f"{m}@{k}" for k in ks for m in ("precision", "recall", "ndcg")] + ["map", "mrr", "auc"]
    print(format_table({saved.model.kind: metrics}, columns))
    print(f"{metrics['n_users']} users evaluated in {seconds:.2f} s (full-catalogue ranking + metrics)")
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2))
    return 0


def _read_user_ids(path: Path, user_map) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"--users: no such file {str(path)!r}")
    raw = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not raw:
        raise ValueError(f"--users: {str(path)!r} lists no user id (one id per line)")
    if user_map is None:
        return np.asarray([int(r) for r in raw], dtype=np.int64)
    values = np.asarray([int(r) for r in raw]) if user_map.is_integer else np.asarray(raw, dtype=object)
    return user_map.encode(values)


def cmd_recommend(args) -> int:
    """Serve a saved model: top-k lists with probabilities and explanations for a file of user ids."""
    from .models import load_model
    from .recommend import recommend

    saved = load_model(args.model, device="cpu")
    model_dir = Path(args.model)
    seen = sp.load_npz(model_dir / "train_matrix.npz") if (model_dir / "train_matrix.npz").is_file() else None
    labels_path = model_dir / "item_labels.json"
    labels = json.loads(labels_path.read_text(encoding="utf-8")) if labels_path.is_file() else None
    users = _read_user_ids(Path(args.users), saved.user_map)
    recs = recommend(saved.model, users, args.k, exclude=None if args.include_seen else seen, history=seen,
                     temperature=args.temperature)
    out = recs.write(args.out, user_map=saved.user_map, item_map=saved.item_map, item_labels=labels)
    print(f"wrote {len(users)} users x top-{args.k} to {out}")
    return 0


def cmd_bench(args) -> int:
    """Every available backend against the float64 reference on one random problem, same run."""
    from .demo import _backend_table

    rng = np.random.default_rng(args.seed)
    users = rng.standard_normal((args.users, args.dim), dtype=np.float32)
    items = rng.standard_normal((args.items, args.dim), dtype=np.float32)
    print(f"U={args.users} I={args.items} d={args.dim} k={args.k} "
          "(for FAISS/PyTorch/implicit anchors run benchmarks/compare.py)")
    _backend_table(users, items, args.k)
    return 0
