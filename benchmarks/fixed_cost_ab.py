"""Fixed per-call cost of a tiny query, for an A/B of two checkouts in alternating processes.

One user against I = 1,000 items (d = 64, k = 10): ``ItemIndex.topk`` and one-off ``mf.topk`` p50 over
thousands of calls, in whichever ``mmrec_fast`` the interpreter imports. Compare two builds by running this
alternately with ``PYTHONPATH`` pointing at each checkout (each built in place)::

    git worktree add /tmp/base <commit> && (cd /tmp/base && python setup.py build_ext --inplace)
    for i in 1 2 3; do PYTHONPATH=/tmp/base python benchmarks/fixed_cost_ab.py --tag before
                       PYTHONPATH=. python benchmarks/fixed_cost_ab.py --tag after; done
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tag", default="this build", help="label of the line printed")
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args(argv)

    import mmrec_fast as mf

    rng = np.random.default_rng(0)
    items = rng.normal(size=(1000, 64)).astype(np.float32)
    user = rng.normal(size=(1, 64)).astype(np.float32)
    index = mf.ItemIndex(items)
    for _ in range(300):  # warm-up: JIT caches, allocator
        index.topk(user, 10)

    def p50_us(call, n):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        return float(np.median(times)) * 1e6

    indexed = p50_us(lambda: index.topk(user, 10), args.calls)
    one_off = p50_us(lambda: mf.topk(user, items, 10), max(1, args.calls * 3 // 5))
    print(f"{args.tag}: ItemIndex.topk p50 {indexed:.1f} us   mf.topk p50 {one_off:.1f} us   ({mf.__file__})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
