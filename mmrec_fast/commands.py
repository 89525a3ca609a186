"""What the ``mmrec-fast`` subcommands do (argument parsing lives in :mod:`mmrec_fast.cli`)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = [
    "load_config",
    "load_data",
    "check_device",
    "cmd_demo",
    "cmd_train",
    "cmd_evaluate",
    "cmd_recommend",
    "cmd_bench",
]

_TRAIN_FLAGS = ("dim", "content_dim", "loss", "n_negatives", "epochs", "batch_size", "lr", "reg", "patience", "seed")
_SECTIONS = ("data", "split", "train", "hybrid")
# Keys of the [data] and [split] sections and the type each value must have ([train] and [hybrid] are
# checked by TrainConfig). A misspelt key is an error: silently ignoring it would train on other data.
_DATA_KEYS = {"source": str, "format": str, "user_col": str, "item_col": str, "rating_col": str, "time_col": str}
_SPLIT_KEYS = {"test_size": (int, float), "seed": int, "relevance": (int, float)}
_FORMATS = ("grouplens", "log")
# YAML can write null; these keys mean "not given" when null (relevance: null = every test row relevant).
_NULLABLE_DATA = frozenset({"format", "rating_col", "time_col"})
_OVERWRITE_HINT = "--overwrite"


def _parse_config_text(path: Path) -> object:
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ValueError(f"--config: use a .toml, .yaml or .yml file, got {path.name!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"--config: {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10: the [data] extra brings tomli
            from ._optional import require

            tomllib = require("tomli", extra="data", feature="--config TOML files (Python 3.10)")
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"--config: {str(path)!r} is not valid TOML ({exc})") from None
    from ._optional import require

    yaml = require("yaml", extra="data", feature="--config YAML files")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"--config: {str(path)!r} is not valid YAML ({' '.join(str(exc).split())})") from None


def _check_section_values(name: str, section: dict, known: dict, nullable: frozenset, path: Path) -> None:
    unknown = sorted(set(map(str, section)) - set(known))
    if unknown:
        raise ValueError(f"--config: {str(path)!r}: unknown key(s) {unknown} in [{name}]; known: {sorted(known)}")
    for key, value in section.items():
        if value is None:
            if key not in nullable:
                raise ValueError(f"--config: {str(path)!r}: [{name}] {key} must have a value")
            continue
        if not isinstance(value, known[key]) or isinstance(value, bool):
            expected = "a string" if known[key] is str else ("an integer" if known[key] is int else "a number")
            raise ValueError(f"--config: {str(path)!r}: [{name}] {key} must be {expected}, got {value!r}")
    if name == "data" and section.get("format") not in (None, *_FORMATS):
        raise ValueError(
            f"--config: {str(path)!r}: [data] format must be one of {list(_FORMATS)}, got {section['format']!r}"
        )


def load_config(path) -> dict:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config file into a dict of sections.

    Sections: ``[data]`` (``source``, ``format`` = ``"grouplens"`` or ``"log"``, ``user_col``,
    ``item_col``, ``rating_col``, ``time_col``), ``[split]`` (``test_size``, ``seed``,
    ``relevance``), ``[train]`` (any :class:`~mmrec_fast.models.TrainConfig` field), ``[hybrid]``
    (overrides for the hybrid).

    Raises
    ------
    ValueError
        The file is missing, not UTF-8, not valid TOML/YAML, not a mapping of sections, or has an
        unknown section, a section that is not a table, an unknown ``[data]``/``[split]`` key or a
        value of the wrong type. Every message starts with ``--config`` and names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config: no such file {str(path)!r}")
    config = _parse_config_text(path)
    if config is None:  # an empty YAML document
        return {}
    if not isinstance(config, dict):
        raise ValueError(
            f"--config: {str(path)!r} must be a mapping of sections ({', '.join(_SECTIONS)}), "
            f"got a {type(config).__name__}"
        )
    unknown = sorted(set(map(str, config)) - set(_SECTIONS))
    if unknown:
        raise ValueError(f"--config: unknown section(s) {unknown}; known: {', '.join(_SECTIONS)}")
    sections = {}
    for name, section in config.items():
        if section is None:  # "train:" with nothing under it in YAML
            section = {}
        if not isinstance(section, dict):
            raise ValueError(
                f"--config: {str(path)!r}: [{name}] must be a table of settings, got "
                f"{type(section).__name__} {section!r:.40}"
            )
        if name == "data":
            _check_section_values(name, section, _DATA_KEYS, _NULLABLE_DATA, path)
        elif name == "split":
            _check_section_values(name, section, _SPLIT_KEYS, frozenset({"relevance"}), path)
        sections[name] = dict(section)
    return sections


def check_device(device: str, argument: str = "--device") -> str:
    """Raise ``ValueError`` naming ``argument`` unless ``device`` is a usable torch device here.

    Accepts ``"auto"``, ``"cpu"``, ``"cuda"``/``"cuda:N"`` (when torch sees CUDA) and ``"mps"``.
    """
    if device == "auto":
        return device
    from ._optional import require

    torch = require("torch", extra="models", feature=f"{argument} (a torch device)")

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{argument}: {device!r} is not a device; use cpu, cuda, cuda:N or auto") from None
    if parsed.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"{argument}: {device!r} is not supported; use cpu, cuda, cuda:N or auto")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{argument}: {device!r} but torch sees no CUDA device; use cpu or auto")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"{argument}: {device!r} but torch sees {torch.cuda.device_count()} CUDA device(s)")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{argument}: {device!r} but MPS is not available here; use cpu or auto")
    return device


def load_data(source: str, *, fmt: str | None = None, user_col="user", item_col="item", rating_col=None, time_col=None):
    """``"ml-100k"`` (the copy inside recbole), a GroupLens directory, or a CSV/TSV/Parquet log."""
    from .data import load_grouplens, load_interactions, load_movielens_100k

    if source in ("ml-100k", "movielens-100k"):
        return load_movielens_100k()
    path = Path(source)
    if not path.exists():
        raise ValueError(f"--data: {source!r} is neither 'ml-100k' nor an existing file or directory")
    if fmt == "grouplens" or (fmt is None and path.is_dir()):
        return load_grouplens(path)
    if path.is_dir():
        raise ValueError(f"--data: {source!r} is a directory; a log (format 'log') is a CSV/TSV/Parquet file")
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
    try:
        return TrainConfig.from_dict(values)
    except (TypeError, ValueError) as exc:  # TypeError: e.g. lr = [1] in the file reaching float()
        sections = "[train]" + (f"/[{section}]" if section != "train" else "")
        origin = f"--config {sections} or flags" if getattr(args, "config", None) else "flags"
        raise ValueError(f"training settings ({origin}): {exc}") from None


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
    split_cfg = {
        "test_size": 0.2,
        "seed": 123,
        "relevance": 4.0 if data.ratings is not None else None,
        **config.get("split", {}),
    }
    for key in ("test_size", "seed_split", "relevance"):
        value = getattr(args, key, None)
        if value is not None:
            split_cfg["seed" if key == "seed_split" else key] = value
    if not isinstance(split_cfg["seed"], int) or isinstance(split_cfg["seed"], bool) or split_cfg["seed"] < 0:
        raise ValueError(f"split seed ([split] seed / --split-seed) must be an integer >= 0, got {split_cfg['seed']!r}")
    try:
        split = make_eval_split(data, **split_cfg)
    except ValueError as exc:
        raise ValueError(f"split settings ([split] / --test-size, --split-seed, --relevance): {exc}") from None
    return data, split, split_cfg, data_options


def cmd_demo(args) -> int:
    """MovieLens-100K end to end (or the synthetic engine demo with ``--synthetic``)."""
    if args.synthetic:
        from .demo import run_synthetic_demo

        return run_synthetic_demo(
            n_users=args.users, n_items=args.items, dim=args.dim, k=args.k, seed=args.seed, show=args.show
        )
    from .demo import run_movielens_demo

    check_device(args.device)
    return run_movielens_demo(args.out, device=args.device, progress=not args.no_progress, overwrite=args.overwrite)


def check_model_out(args, overwrite_hint: str):
    """``--model`` names a kind and ``--out`` may receive a saved model: checked before any training."""
    from ._outputs import check_output_dir
    from .models.io import saved_model_files
    from .pipeline import MODEL_KINDS

    if args.model not in MODEL_KINDS:
        raise ValueError(f"--model must be one of {', '.join(MODEL_KINDS)}, got {args.model!r}")
    return check_output_dir(
        args.out,
        argument="--out",
        overwrite=args.overwrite,
        recognise=saved_model_files,
        what="saved model",
        overwrite_hint=overwrite_hint,
    )


def training_part(split, split_cfg: dict):
    """The split's training part with its ratings as values (EASE / iALS confidences), and the relevance
    threshold of the validation positives (``None`` when the data has no ratings)."""
    if split.train.ratings is None:
        return split.train_matrix, None
    return split.train_ratings, split_cfg.get("relevance", 4.0)


def content_features(args, data, out_dir):
    """``(features, blocks)`` of the item texts for the content kinds, ``(None, None)`` for the others."""
    from .pipeline import CONTENT_KINDS, item_texts, text_features

    if args.model not in CONTENT_KINDS:
        return None, None
    if data.item_features is None:
        raise ValueError(f"--model {args.model}: the data has no item side information to embed")
    features = text_features(
        item_texts(data),
        cache_dir=out_dir.parent / ".mmrec_cache",
        device=args.device,
        progress=not args.no_progress,
    )
    return features, {"text": (0, features.shape[1])}


def cmd_train(args) -> int:
    """Train one model on the split's training part and save it (with its training matrix and labels)."""
    from .evaluation import evaluate_model
    from .models import save_model
    from .pipeline import item_titles, train_model

    # Every check that can fail runs before minutes of training, not after.
    out_dir = check_model_out(args, _OVERWRITE_HINT)
    check_device(args.device)
    config = load_config(args.config) if args.config else {}
    train_config = _train_config(args, config, "hybrid" if args.model == "hybrid" else "train")
    data, split, split_cfg, data_options = _data_and_split(args, config)
    train, relevance = training_part(split, split_cfg)
    if args.all_data:
        train, relevance = data.to_csr("ones", duplicates="sum"), None
        train.data[:] = 1.0
    features, blocks = content_features(args, data, out_dir)
    model = train_model(
        args.model,
        data.n_users,
        data.n_items,
        train,
        train_config,
        features=features,
        feature_blocks=blocks,
        relevance=relevance,
    )
    labels = json.dumps(item_titles(data))
    # The training matrix and labels go into the same atomic, checksummed save as the model.
    out = save_model(
        model,
        out_dir,
        user_map=data.user_map,
        item_map=data.item_map,
        overwrite=args.overwrite,
        metadata={
            "data": data_options,
            "split": split_cfg,
            "all_data": bool(args.all_data),
            "tuning": getattr(model, "tuning", None),
        },
        extra_files={
            "train_matrix.npz": lambda path: sp.save_npz(path, train),
            "item_labels.json": lambda path: path.write_text(labels, encoding="utf-8"),
        },
    )
    print(f"saved {args.model} model to {out}")
    if not args.all_data:
        metrics = evaluate_model(model, split.positives, exclude=split.exclude, ks=(5, 10, 20))
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}, indent=1))
    return 0


def cmd_evaluate(args) -> int:
    """Evaluate a saved model on the test part of the same (re-created, deterministic) split."""
    from ._outputs import check_output_file, write_file_atomically
    from .evaluation import evaluate_model
    from .models import load_model
    from .pipeline import format_table

    if args.json:
        check_output_file(
            args.json, argument="--json", overwrite=args.overwrite, inputs=[args.model, args.config, args.data]
        )
    check_device(args.device)
    saved = load_model(args.model, device="cpu")
    config = load_config(args.config) if args.config else {}
    if args.data is None and "source" not in config.get("data", {}):
        # Same data and split as training, unless the user says otherwise.
        saved_data = saved.metadata.get("data", {"source": "ml-100k"})
        if not isinstance(saved_data, dict):
            # Models saved by run_experiment (the demo) record only a description of their data.
            raise ValueError(
                f"--data: the model in {args.model!r} does not record how its data was loaded "
                f"(it was not saved by `mmrec-fast train`); pass --data (the demo's models: "
                f"--data ml-100k)"
            )
        config["data"] = {k: v for k, v in saved_data.items() if v is not None}
    split_saved = saved.metadata.get("split", {})
    if not isinstance(split_saved, dict):
        split_saved = {}
    config.setdefault("split", {}).update({k: v for k, v in split_saved.items() if k not in config["split"]})
    data, split, _, _ = _data_and_split(args, config)
    if saved.item_map is not None and saved.item_map != data.item_map:
        raise ValueError("--data: its item ids differ from the ones the model was trained on")
    if saved.metadata.get("all_data"):
        print(
            "warning: this model was trained on all data (--all-data); its test metrics are not held-out",
            file=sys.stderr,
        )
    ks = tuple(args.k)
    started = time.perf_counter()
    metrics = evaluate_model(saved.model, split.positives, exclude=split.exclude, ks=ks)
    seconds = time.perf_counter() - started
    columns = [f"{m}@{k}" for k in ks for m in ("precision", "recall", "ndcg")] + ["map", "mrr", "auc"]
    print(format_table({saved.model.kind: metrics}, columns))
    print(f"{metrics['n_users']} users evaluated in {seconds:.2f} s (full-catalogue ranking + metrics)")
    if args.json:
        text = json.dumps(metrics, indent=2)
        write_file_atomically(args.json, lambda path: path.write_text(text, encoding="utf-8"))
    return 0


def _read_user_ids(path: Path, user_map) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"--users: no such file {str(path)!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"--users: {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    raw = [line.strip() for line in text.splitlines() if line.strip()]
    if not raw:
        raise ValueError(f"--users: {str(path)!r} lists no user id (one id per line)")
    if user_map is None or user_map.is_integer:
        values = []
        for number, token in enumerate(raw, start=1):
            try:
                value = int(token)
            except ValueError:
                raise ValueError(f"--users: {str(path)!r}: {token!r} is not an integer id (line {number})") from None
            if not -(2**63) <= value < 2**63:
                raise ValueError(f"--users: {str(path)!r}: unknown user id {token!r} (line {number})")
            values.append(value)
        values = np.asarray(values, dtype=np.int64)
        return values if user_map is None else user_map.encode(values)
    return user_map.encode(np.asarray(raw, dtype=object))


def cmd_recommend(args) -> int:
    """Serve a saved model: top-k lists with probabilities and explanations for a file of user ids."""
    from ._outputs import check_output_file, write_file_atomically
    from .models import load_model
    from .recommend import recommend

    check_output_file(args.out, argument="--out", overwrite=args.overwrite, inputs=[args.users, args.model])
    if Path(args.out).suffix.lower() not in (".jsonl", ".csv", ".parquet"):
        raise ValueError(f"--out: {args.out!r} needs a .jsonl, .csv or .parquet extension")
    saved = load_model(args.model, device="cpu")
    # Read only files the load verified against their checksums.
    seen = sp.load_npz(saved.extra_files["train_matrix.npz"]) if "train_matrix.npz" in saved.extra_files else None
    labels_path = saved.extra_files.get("item_labels.json")
    labels = json.loads(labels_path.read_text(encoding="utf-8")) if labels_path is not None else None
    users = _read_user_ids(Path(args.users), saved.user_map)
    recs = recommend(
        saved.model,
        users,
        args.k,
        exclude=None if args.include_seen else seen,
        history=seen,
        temperature=args.temperature,
    )
    out = write_file_atomically(
        args.out, lambda path: recs.write(path, user_map=saved.user_map, item_map=saved.item_map, item_labels=labels)
    )
    print(f"wrote {len(users)} users x top-{args.k} to {out}")
    return 0


def cmd_bench(args) -> int:
    """Every available backend against the float64 reference on one random problem, same run."""
    from .demo import _backend_table

    rng = np.random.default_rng(args.seed)
    users = rng.standard_normal((args.users, args.dim), dtype=np.float32)
    items = rng.standard_normal((args.items, args.dim), dtype=np.float32)
    print(
        f"U={args.users} I={args.items} d={args.dim} k={args.k} "
        "(for FAISS/PyTorch/implicit anchors run benchmarks/compare.py)"
    )
    _backend_table(users, items, args.k)
    return 0
