"""Latency of one ``POST /admin/items`` write at a large catalogue: the live ItemIndex vs a full repack.

"live" is what the service does now (``Snapshot.with_items``: index add/update/remove, a delta segment
and tombstones, the new snapshot pins the new state); "repack" is what it did before (copy the
catalogue, apply the change, build a new ``ItemIndex`` and id lookup). Each write adds one item, updates
one and removes one; the two variants alternate in one process. Run::

    python benchmarks/serve_item_update.py --items 1000000 --dim 64 --reps 5
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import mmrec_fast as mf
from mmrec_fast.serve.snapshot import IdLookup, Snapshot


def _snapshot(items: np.ndarray) -> Snapshot:
    n = items.shape[0]
    index = mf.ItemIndex(items)
    ids = np.arange(n, dtype=np.int64) + 10_000_000
    codes = np.arange(n, dtype=np.int64)
    return Snapshot(
        model=None,
        generation=0,
        source="synthetic",
        user_vectors=np.zeros((1, items.shape[1]), np.float32),
        index=index,
        state=index.snapshot(),
        users=IdLookup(np.zeros(1, np.int64), "user"),
        catalogue=IdLookup(ids, "item"),
        model_items=IdLookup(ids, "item"),
        key_to_code=codes,
        code_to_key=codes.copy(),
        labels=None,
        seen=None,
    )


def _repack(items: np.ndarray, ext: np.ndarray, add_vec, upd_row: int, upd_vec, rm_row: int):
    """The former write path: copy, edit, repack the whole catalogue."""
    new = items.copy()
    new[upd_row] = upd_vec
    keep = np.ones(new.shape[0] + 1, dtype=bool)
    keep[rm_row] = False
    new = np.vstack([new, add_vec[None]])[keep]
    ext = np.concatenate([ext, [ext.max() + 1]])[keep]
    index = mf.ItemIndex(np.ascontiguousarray(new))
    return new, ext, index, IdLookup(ext, "item")


def main() -> None:
    """Time both write paths and print one line per variant (median and all reps, seconds)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    items = rng.standard_normal((args.items, args.dim), dtype=np.float32)
    snap = _snapshot(items)
    ext = snap.catalogue.ids.copy()
    times = {"live": [], "repack": []}
    for rep in range(args.reps):
        vecs = rng.standard_normal((2, args.dim), dtype=np.float32)
        new_id, upd_id, rm_id = 20_000_000 + rep, int(ext[2 * rep + 1]), int(ext[2 * rep])
        for variant in ("live", "repack") if rep % 2 == 0 else ("repack", "live"):
            t0 = time.perf_counter()
            if variant == "live":
                snap = snap.with_items([new_id, upd_id], vecs, [None, None], [rm_id], rep + 1)
            else:
                items, ext_r, _, _ = _repack(items, ext, vecs[0], 2 * rep + 1, vecs[1], 2 * rep)
            times[variant].append(time.perf_counter() - t0)
        ext = ext_r
    load = os.getloadavg()[0]
    print(f"catalogue {args.items} x {args.dim}, {args.reps} writes each (add 1, update 1, remove 1), load {load:.1f}")
    for variant, ts in times.items():
        print(f"{variant:7s} median {np.median(ts) * 1e3:8.1f} ms   all: {', '.join(f'{t * 1e3:.1f}' for t in ts)}")
    print(f"live pending rows after the writes: {snap.index.pending}, items {snap.n_items}")


if __name__ == "__main__":
    main()
