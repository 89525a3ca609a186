"""Train/test splits. Every split returns ``(train, test)`` sharing the input's id maps, so a code
means the same user/item on both sides; the two parts are disjoint and together hold every row.

Random splits are seeded through ``numpy.random.default_rng(seed)``; temporal ones are
deterministic (ties in time broken by row order, as documented per function).
"""

from __future__ import annotations

import math

import numpy as np

from .interactions import Interactions

__all__ = ["random_split", "temporal_split", "leave_last_out", "drop_unseen"]


def _n_test(test_size, n: int) -> int:
    """Number of test rows: a fraction in (0, 1) -> ``ceil(test_size * n)`` (as Cornac's RatioSplit),
    or an int count in 1 .. n-1."""
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float, np.integer, np.floating)):
        raise ValueError(f"test_size: expected a fraction in (0, 1) or a row count, got {test_size!r}")
    if isinstance(test_size, (float, np.floating)) and not float(test_size).is_integer():
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size: a fraction must lie in (0, 1), got {test_size}")
        count = math.ceil(float(test_size) * n)
    else:
        if isinstance(test_size, (float, np.floating)) and test_size in (0.0, 1.0):
            raise ValueError(f"test_size: a fraction must lie in (0, 1), got {test_size}")
        count = int(test_size)
    if not 1 <= count <= n - 1:
        raise ValueError(
            f"test_size: {test_size!r} gives {count} test rows out of {n}; need 1 .. {n - 1} "
            f"so that both parts are non-empty"
        )
    return count


def _complement(data: Interactions, test_mask: np.ndarray):
    return data.subset(~test_mask), data.subset(test_mask)


def random_split(data: Interactions, test_size=0.2, seed=0) -> tuple[Interactions, Interactions]:
    """Uniformly random split of the (user, item) pairs.

    Repeated rows of the same pair go to the same side (all of a pair's rows are drawn together),
    so a pair never leaks from test into train. ``ceil(test_size * n_pairs)`` pairs go to test.

    Parameters
    ----------
    data : Interactions
    test_size : float in (0, 1) or int
        Fraction or number of pairs for the test part.
    seed : int or numpy.random.Generator
        ``numpy.random.default_rng(seed)``: the same seed gives the same split.

    Returns
    -------
    (train, test) : tuple of Interactions
        Rows in their original order; same maps and features as ``data``.
    """
    keys = data.pair_keys()
    uniq, inverse = np.unique(keys, return_inverse=True)
    n_test = _n_test(test_size, len(uniq))
    rng = np.random.default_rng(seed)
    chosen = np.zeros(len(uniq), dtype=bool)
    chosen[rng.permutation(len(uniq))[:n_test]] = True
    return _complement(data, chosen[inverse.reshape(-1)])


def temporal_split(data: Interactions, test_size=0.2) -> tuple[Interactions, Interactions]:
    """Global time cut: the latest ``ceil(test_size * n)`` rows form the test part.

    Rows are ordered by timestamp; rows with equal timestamps keep their log order (stable sort), so
    the result is deterministic. Hence every train timestamp is <= every test timestamp (equality
    only for a timestamp straddling the cut). A pair seen before the cut and again after it appears
    in both parts (a re-consumption), exactly as in the log.

    Parameters
    ----------
    data : Interactions
        Must have ``timestamps``.
    test_size : float in (0, 1) or int
        Fraction or number of rows for the test part.
    """
    if data.timestamps is None:
        raise ValueError("data: temporal_split needs timestamps, and this log has none")
    n_test = _n_test(test_size, len(data))
    order = np.argsort(data.timestamps, kind="stable")
    mask = np.zeros(len(data), dtype=bool)
    mask[order[len(data) - n_test :]] = True
    return _complement(data, mask)


def leave_last_out(data: Interactions, n: int = 1) -> tuple[Interactions, Interactions]:
    """Per-user leave-last-out: each user's ``n`` latest rows form the test part.

    Rows are ordered per user by timestamp with ties broken by log order (a stable sort, as
    RecBole's ordering), so "latest" is deterministic. A user with ``n`` or fewer rows stays
    entirely in train: every test user keeps at least one training row.

    Parameters
    ----------
    data : Interactions
        Must have ``timestamps``.
    n : int
        Rows per user to hold out (>= 1).
    """
    if data.timestamps is None:
        raise ValueError("data: leave_last_out needs timestamps, and this log has none")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    # Sort by (user, timestamp, row): lexsort's last key is the primary one and it is stable.
    order = np.lexsort((data.timestamps, data.users))
    users_sorted = data.users[order]
    counts = np.bincount(data.users, minlength=data.n_users)
    ends = np.cumsum(counts)  # one past each user's last sorted row
    rank_from_end = ends[users_sorted] - np.arange(len(order))  # 1 for the latest row of a user
    take = (rank_from_end <= n) & (counts[users_sorted] > n)
    mask = np.zeros(len(data), dtype=bool)
    mask[order[take]] = True
    return _complement(data, mask)


def drop_unseen(test: Interactions, train: Interactions) -> Interactions:
    """Test rows whose user and item both occur in ``train`` (Cornac's ``exclude_unknowns=True``).

    Models cannot score users/items they never saw in training; Cornac silently removes such test
    rows, and comparisons with it must too.
    """
    if test.user_map != train.user_map or test.item_map != train.item_map:
        raise ValueError("test: must share train's id maps (both parts of one split)")
    seen_u = np.zeros(train.n_users, dtype=bool)
    seen_u[train.users] = True
    seen_i = np.zeros(train.n_items, dtype=bool)
    seen_i[train.items] = True
    return test.subset(seen_u[test.users] & seen_i[test.items])
