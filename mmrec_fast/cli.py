"""The ``mmrec-fast`` command line: demo, train, evaluate, recommend, bench, backends."""

from __future__ import annotations

import argparse
import sys

from ._optional import MissingDependencyError

__all__ = ["main"]

# Expected user errors: bad values, bad or missing files, unreadable paths, a command whose extra is
# not installed. Each becomes exit 2 and one line on stderr; anything else is a bug in this program
# and keeps its traceback.
_USER_ERRORS = (ValueError, OSError, MissingDependencyError)

_EPILOG = """examples:
  mmrec-fast demo                                   # MovieLens-100K end to end -> ./mmrec_fast_demo/
  mmrec-fast demo --synthetic                       # the engine alone on random vectors
  mmrec-fast train --model hybrid --out models/hybrid
  mmrec-fast evaluate --model models/hybrid
  mmrec-fast recommend --model models/hybrid --users ids.txt --out recs.jsonl
  mmrec-fast bench --users 2000 --items 200000 --dim 64 -k 100
"""


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a zero-size problem is a usage error, not a numpy crash)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _add_overwrite_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace {what} if it already exists (never a file or directory this program did not write)",
    )


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data and split")
    g.add_argument(
        "--data",
        help="'ml-100k' (default), a GroupLens directory (u.data, u.item), or a CSV/TSV/Parquet interaction log",
    )
    g.add_argument("--user-col", dest="user_col", help="user column of a CSV/TSV/Parquet log")
    g.add_argument("--item-col", dest="item_col", help="item column of a CSV/TSV/Parquet log")
    g.add_argument("--rating-col", dest="rating_col", help="rating column (optional)")
    g.add_argument("--time-col", dest="time_col", help="timestamp column (optional)")
    g.add_argument("--test-size", dest="test_size", type=float, help="held-out share of rows (default 0.2)")
    g.add_argument(
        "--split-seed", dest="seed_split", type=_non_negative_int, help="split seed (default 123, Cornac's protocol)"
    )
    g.add_argument("--relevance", type=float, help="test ratings >= this are relevant (default 4.0)")
    p.add_argument(
        "--config", help="TOML or YAML file with [data], [split], [train], [hybrid] sections; flags override it"
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, auto")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bars")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmrec-fast",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
        description="Full-catalogue top-k and softmax scoring for multimodal recommendation, and the "
        "pipeline around it: data, text features, BPR-MF / hybrid / content models, metrics, lists.",
    )
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="MovieLens-100K pipeline end to end (or --synthetic: the engine alone)",
        description="Without flags: MovieLens-100K -> Cornac-protocol split -> MiniLM text features of "
        "title+year+genres -> BPR-MF, hybrid and content models -> metrics at k=5,10,20 -> "
        "lists with probabilities and explanations; writes models, lists (CSV/Parquet/JSONL), "
        "metrics.json and PNG plots to --out. --synthetic: 1,000 random users x 10,000 items.",
    )
    demo.add_argument(
        "--out",
        default="mmrec_fast_demo",
        help="output directory (default ./mmrec_fast_demo); must be new or empty unless --overwrite",
    )
    _add_overwrite_flag(demo, "the output of an earlier demo in --out")
    demo.add_argument("--device", default="cpu", help="torch device (default cpu)")
    demo.add_argument("--no-progress", dest="no_progress", action="store_true", help="no progress bars")
    syn = demo.add_argument_group("synthetic demo (--synthetic)")
    syn.add_argument("--synthetic", action="store_true", help="run the synthetic engine demo instead")
    syn.add_argument("--users", type=_positive_int, default=1000, help="number of users (default 1000)")
    syn.add_argument("--items", type=_positive_int, default=10000, help="number of items (default 10000)")
    syn.add_argument("--dim", type=_positive_int, default=10, help="embedding dimension (default 10)")
    syn.add_argument("-k", type=_positive_int, default=10, help="list length (default 10)")
    syn.add_argument("--seed", type=_non_negative_int, default=42, help="random seed (default 42)")
    syn.add_argument("--show", type=_non_negative_int, default=10, help="users whose lists are printed (default 10)")

    train = sub.add_parser(
        "train",
        help="train a model and save it to a directory",
        description="Train on the split's training part (or --all-data) and save the "
        "model, id maps, training matrix and item labels to --out; prints "
        "test metrics unless --all-data.",
    )
    # Not argparse choices: the kinds live in mmrec_fast.pipeline (heavy to import just to parse flags).
    train.add_argument(
        "--model",
        default="bpr",
        help="model kind: bpr (default), hybrid, content, or any "
        "other kind of mmrec_fast.pipeline.MODEL_KINDS "
        "(ease, ials, ials-content, mostpop)",
    )
    train.add_argument("--out", required=True, help="model directory to write (new or empty; parents are created)")
    _add_overwrite_flag(train, "a saved model in --out")
    train.add_argument(
        "--all-data",
        dest="all_data",
        action="store_true",
        help="train on every interaction (for serving; no held-out metrics)",
    )
    _add_data_flags(train)
    hp = train.add_argument_group("training (override the config file)")
    for flag, kind in (
        ("dim", int),
        ("content-dim", int),
        ("epochs", int),
        ("batch-size", int),
        ("n-negatives", int),
        ("patience", int),
        ("seed", int),
        ("lr", float),
        ("reg", float),
    ):
        hp.add_argument(f"--{flag}", dest=flag.replace("-", "_"), type=kind)
    hp.add_argument("--loss", choices=("bpr", "softmax"))

    ev = sub.add_parser(
        "evaluate",
        help="evaluate a saved model (full-catalogue ranking)",
        description="Re-create the model's split and report precision/recall/NDCG at -k, "
        "MAP, MRR and AUC over every training-catalogue item.",
    )
    ev.add_argument("--model", required=True, help="saved model directory")
    ev.add_argument("-k", type=_positive_int, nargs="+", default=[5, 10, 20], help="cut-offs (default 5 10 20)")
    ev.add_argument("--json", help="also write the metrics to this JSON file")
    _add_overwrite_flag(ev, "the --json file")
    _add_data_flags(ev)

    rec = sub.add_parser(
        "recommend",
        help="serve a saved model to a file of user ids",
        description="Top-k lists with catalogue-softmax probabilities and explanations "
        "(score share per block, similar past items) for the users listed "
        "one per line in --users; output format from the --out extension.",
    )
    rec.add_argument("--model", required=True, help="saved model directory")
    rec.add_argument("--users", required=True, help="text file, one raw user id per line")
    rec.add_argument("--out", required=True, help="output file: .jsonl, .csv or .parquet")
    rec.add_argument("-k", type=_positive_int, default=10, help="list length (default 10)")
    rec.add_argument("--temperature", type=_positive_float, default=1.0, help="softmax temperature (default 1)")
    _add_overwrite_flag(rec, "the --out file")
    rec.add_argument(
        "--include-seen", dest="include_seen", action="store_true", help="do not exclude the users' training items"
    )

    bench = sub.add_parser(
        "bench",
        help="time every available backend against the float64 reference",
        description="One random problem, every backend, same run; ratios, not bare seconds. "
        "benchmarks/compare.py adds FAISS, PyTorch, implicit and NumPy anchors.",
    )
    bench.add_argument("--users", type=_positive_int, default=2000)
    bench.add_argument("--items", type=_positive_int, default=100000)
    bench.add_argument("--dim", type=_positive_int, default=64)
    bench.add_argument("-k", type=_positive_int, default=100)
    bench.add_argument("--seed", type=_non_negative_int, default=0)

    from .tune_command import add_tune_parser

    add_tune_parser(sub, _add_data_flags, _positive_int, _positive_float, _add_overwrite_flag)
    from .serve.command import add_serve_parser  # light: no [serve] import until the command runs

    add_serve_parser(sub, _positive_int, _positive_float)
    sub.add_parser("backends", help="list the engines available here (and why others are not)")
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mmrec-fast``; returns the process exit code.

    0 on success; 2 on a usage or data error (bad flags, bad or missing files, invalid values, an
    output that would replace something, a missing extra: one line on stderr, no traceback); 130 on Ctrl-C.
    ``--help`` and argparse's own usage errors exit through ``SystemExit`` as usual.
    """
    command = "mmrec-fast"
    try:
        parser = _build_parser()
        args = parser.parse_args(argv)
        if args.command is not None:
            command = f"mmrec-fast {args.command}"
        if args.command == "backends":
            from . import available_backends

            for status in available_backends().values():
                print(status)
            return 0
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        if args.command == "tune":
            from .tune_command import cmd_tune

            return cmd_tune(args)
        if args.command == "serve":
            from .serve.command import cmd_serve

            return cmd_serve(args)
        from . import commands

        handler = {
            "demo": commands.cmd_demo,
            "train": commands.cmd_train,
            "evaluate": commands.cmd_evaluate,
            "recommend": commands.cmd_recommend,
            "bench": commands.cmd_bench,
        }[args.command]
        return handler(args)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except _USER_ERRORS as exc:
        print(f"{command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
