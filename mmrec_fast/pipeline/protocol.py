"""The evaluation protocol: Cornac's ``RatioSplit`` reproduced exactly, relevance threshold, candidates."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..data import Interactions, drop_unseen

__all__ = ["EvalSplit", "cornac_ratio_split", "make_eval_split", "own_and_unseen", "pairs_block"]


def cornac_ratio_split(
    data: Interactions, test_size: float = 0.2, seed: int = 123
) -> tuple[Interactions, Interactions]:
    """Cornac 3.0.1's ``RatioSplit`` on the rows of ``data`` in their stored (file) order.

    Cornac draws ``numpy.random.RandomState(seed).permutation(n)`` and takes the first
    ``n - ceil(test_size * n)`` positions as training rows and the last ``ceil(test_size * n)`` as
    test rows (no validation part). Reproducing the draw gives the identical split without importing
    Cornac; ``benchmarks/movielens_vs_cornac.py`` checks the two agree row for row.
    """
    n = len(data)
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    n_test = math.ceil(test_size * n)
    if not 0 < n_test < n:
        raise ValueError(f"test_size={test_size} leaves no train or no test rows for {n} interactions")
    order = np.random.RandomState(seed).permutation(n)
    train_mask = np.zeros(n, dtype=bool)
    train_mask[order[: n - n_test]] = True
    return data.subset(train_mask), data.subset(~train_mask)


@dataclass
class EvalSplit:
    """Everything an experiment needs, as CSR matrices over the full id space.

    Attributes
    ----------
    train, test : Interactions
        The split (test rows with users/items unseen in training already dropped).
    train_matrix : csr (n_users, n_items)
        Training interactions (1 per pair): what models learn from.
    positives : csr (n_users, n_items)
        Held-out relevant items: test rows with rating >= the relevance threshold.
    exclude : csr (n_users, n_items)
        Non-candidates per user: their own training items plus every item outside the training
        catalogue (never seen in training), so each user ranks "every training-catalogue item
        except the user's own training items".
    """

    train: Interactions
    test: Interactions
    train_matrix: sp.csr_matrix
    positives: sp.csr_matrix
    exclude: sp.csr_matrix

    @property
    def train_ratings(self) -> sp.csr_matrix:
        """Training interactions with their rating values (EASE and iALS learn from them as confidences).

        The 0/1 :attr:`train_matrix` when the data has no ratings; the last rating of a repeated pair.
        """
        if self.train.ratings is None:
            return self.train_matrix
        return self.train.to_csr("ratings", duplicates="last")


def make_eval_split(
    data: Interactions, *, test_size: float = 0.2, seed: int = 123, relevance: float | None = 4.0
) -> EvalSplit:
    """Cornac-protocol split of ``data``: ratio split, unknowns dropped, positives rated >= ``relevance``.

    Parameters
    ----------
    data : Interactions
        The whole log in file order.
    test_size : float
        Fraction of rows held out (Cornac rounds up).
    seed : int
        Seed of Cornac's permutation.
    relevance : float or None
        Test rows rated at least this are relevant; ``None`` makes every test row relevant (and is
        required when the data has no ratings).
    """
    train, test = cornac_ratio_split(data, test_size, seed)
    test = drop_unseen(test, train)
    shape = (data.n_users, data.n_items)
    train_matrix = train.to_csr("ones", duplicates="sum")
    train_matrix.data[:] = 1.0
    if relevance is None:
        keep = np.ones(len(test), dtype=bool)
    else:
        if test.ratings is None:
            raise ValueError("relevance: the data has no ratings; pass relevance=None")
        keep = test.ratings >= relevance
    relevant = test.subset(keep)
    positives = sp.csr_matrix((np.ones(len(relevant)), (relevant.users, relevant.items)), shape=shape)
    positives.sum_duplicates()
    positives.data[:] = 1.0
    unseen_items = np.flatnonzero(np.diff(train_matrix.tocsc().indptr) == 0)
    exclude = own_and_unseen(train_matrix, unseen_items)
    return EvalSplit(train, test, train_matrix, positives, exclude)


def pairs_block(rows: np.ndarray, columns: np.ndarray, shape) -> sp.csr_matrix:
    """CSR of ones with every column of ``columns`` set in every row of ``rows`` (a candidate filter)."""
    data = np.ones(len(rows) * len(columns), dtype=np.float32)
    return sp.csr_matrix((data, (np.repeat(rows, len(columns)), np.tile(columns, len(rows)))), shape=shape)


def own_and_unseen(own: sp.spmatrix, unseen_items: np.ndarray, rows: np.ndarray | None = None) -> sp.csr_matrix:
    """The protocol's non-candidates as a 0/1 CSR: each user's ``own`` items, plus ``unseen_items`` (items a
    model cannot have learned) for ``rows`` (every user by default)."""
    rows = np.arange(own.shape[0]) if rows is None else rows
    exclude = (own + pairs_block(rows, unseen_items, own.shape)).tocsr()
    exclude.data[:] = 1.0
    exclude.sort_indices()
    return exclude
