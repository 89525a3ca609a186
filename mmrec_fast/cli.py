"""The ``mmrec-fast`` command line."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmrec-fast",
        description="Full-catalogue top-k and softmax scoring for multimodal recommendation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo", help="run the seed example (1,000 users x 10,000 items x 10 dims)",
        description="Synthetic seed example: interest probabilities p_ij = softmax_j(u_i . v_j), the top-10 "
                    "of the first users, the naive softmax's overflow next to ours, and every available "
                    "backend's time and agreement with the float64 reference.")
    demo.add_argument("--synthetic", action="store_true",
                      help="the synthetic seed example (currently the only demo)")
    demo.add_argument("--users", type=int, default=1000, help="number of users (default 1000)")
    demo.add_argument("--items", type=int, default=10000, help="number of items (default 10000)")
    demo.add_argument("--dim", type=int, default=10, help="embedding dimension (default 10)")
    demo.add_argument("-k", type=int, default=10, help="list length (default 10)")
    demo.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    demo.add_argument("--show", type=int, default=10, help="users whose lists are printed (default 10)")
    sub.add_parser("backends", help="list the engines available here (and why others are not)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mmrec-fast``; returns the process exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_synthetic_demo

        return run_synthetic_demo(n_users=args.users, n_items=args.items, dim=args.dim, k=args.k,
                                  seed=args.seed, show=args.show)
    if args.command == "backends":
        from . import available_backends

        for status in available_backends().values():
            print(status)
        return 0
    parser.print_help(sys.stderr)
    return 2
