"""Trained factor models: BPR matrix factorisation and the content-aware hybrid (VBPR-style).

Both keep their weights in a :class:`FactorNet` (torch tensors: the save format); BPR-MF on the CPU is
trained by the native Numba kernel writing into those tensors, everything else by torch (see
:func:`mmrec_fast.models.training.resolve_trainer`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._optional import require
from ._checks import check_features, check_interactions
from ._net import FactorNet
from .base import ScoreBlock, SizedRecommender
from .config import TrainConfig
from .training import resolve_device, train_factor_net

torch = require("torch", extra="models", feature="BPR-MF and the hybrid model")

__all__ = ["FactorModel", "BPRMF", "HybridMF"]


class FactorModel(SizedRecommender):
    """ID embeddings (+ optional projected content per modality) + item bias, trained with BPR or softmax.

    Parameters
    ----------
    n_users, n_items : int
        Size of the user and item id spaces (dense codes ``0..n-1``).
    config : TrainConfig
        Model size and training settings.
    features : ndarray (n_items, C), optional
        Item content vectors (e.g. the fused encoder output). Missing modalities must be zero rows.
    feature_blocks : mapping or sequence of ScoreBlock, optional
        The modality blocks of ``features``; each gets its own projection and its own score block.
    """

    kind = "factor"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        config: TrainConfig | None = None,
        *,
        features: np.ndarray | None = None,
        feature_blocks=None,
    ):
        super().__init__(n_users, n_items)
        self.config = config or TrainConfig()
        self.features, self.feature_blocks = (None, [])
        if features is not None:
            self.features, self.feature_blocks = check_features(features, self._n_items, feature_blocks)
        generator = torch.Generator().manual_seed(self.config.seed)
        self.net = FactorNet(
            self._n_users,
            self._n_items,
            self.config.dim,
            features=self.features,
            feature_blocks=self.feature_blocks,
            content_dim=self.config.content_dim,
            init_std=self.config.init_std,
            generator=generator,
        )
        self.net.to(resolve_device(self.config.device))
        self.net.eval()
        self.history: list[dict] = []
        self._vectors: tuple[np.ndarray, np.ndarray] | None = None

    def fit(self, train: sp.spmatrix, *, validation: sp.spmatrix | None = None) -> FactorModel:
        """Train on the positive (nonzero) pairs of ``train``; early-stop on ``validation`` if given.

        Parameters
        ----------
        train : scipy sparse (n_users, n_items)
            Observed interactions; every stored entry is a positive (values are ignored).
        validation : scipy sparse (n_users, n_items), optional
            Held-out positives for early stopping on NDCG@10 (training items excluded from ranking).

        Returns
        -------
        self
        """
        train = check_interactions(train, "train", self._n_users, self._n_items)
        if validation is not None:
            validation = check_interactions(validation, "validation", self._n_users, self._n_items)
        self.history = train_factor_net(self.net, train, self.config, validation=validation, desc=self.kind)
        self._vectors = None
        return self

    def _compute_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        if self._vectors is None:
            device = self.net.item_id.weight.device
            with torch.no_grad():
                users = self.net.users(torch.arange(self._n_users, device=device))
                items = self.net.items(torch.arange(self._n_items, device=device))
            self._vectors = (
                np.ascontiguousarray(users.cpu().numpy(), np.float32),
                np.ascontiguousarray(items.cpu().numpy(), np.float32),
            )
        return self._vectors

    def user_vectors(self) -> np.ndarray:
        return self._compute_vectors()[0]

    def item_vectors(self) -> np.ndarray:
        return self._compute_vectors()[1]

    def blocks(self) -> list[ScoreBlock]:
        return self.net.score_blocks()

    def representation(self) -> np.ndarray:
        # Content-aware models compare items by their content (what a person would call similar);
        # BPR-MF has only its learned ID vectors.
        if self.features is not None:
            return self.features
        return self.item_vectors()[:, : self.config.dim]

    def fold_in(self, history, *, n_negatives: int = 32, max_steps: int = 50, seed: int = 0) -> np.ndarray:
        """User vectors for users not seen in training, from their interactions, without retraining.

        With the item side fixed, each new user's free columns (ID and content parts; the last column
        stays the constant 1 that meets the item bias) minimise the BPR loss of their items against
        ``n_negatives`` seeded random negatives per item (mean over pairs), with training's L2 weight
        per sample, by L-BFGS from 0
        ("a few steps": at most ``max_steps``). The same objective serves the hybrid, whichever loss
        trained it.

        Parameters
        ----------
        history : scipy sparse (n, n_items)
            Each new user's observed items (stored entries are positives; values are ignored).
        n_negatives, max_steps, seed : int
            Negatives per positive, the L-BFGS step limit and the negatives' seed.

        Returns
        -------
        ndarray (n, D) float32
            Rows usable beside :meth:`user_vectors` (same columns, the constant 1 last).
        """
        from scipy.optimize import minimize

        if not sp.issparse(history) or history.ndim != 2 or history.shape[1] != self._n_items:
            raise ValueError(f"history must be a scipy sparse matrix with {self._n_items} columns")
        rows = sp.csr_matrix(history)
        items = self.item_vectors().astype(np.float64)
        free = items.shape[1] - 1  # the last column is the item bias, met by a constant 1
        reg = float(self.config.reg if self.config.reg is not None else 0.0)
        rng = np.random.default_rng(seed)
        out = np.zeros((rows.shape[0], items.shape[1]), dtype=np.float32)
        out[:, -1] = 1.0
        for u in range(rows.shape[0]):
            positives = rows.indices[rows.indptr[u] : rows.indptr[u + 1]]
            if positives.size == 0:
                continue  # no history: a zero user (the bias alone ranks the items)
            negatives = rng.integers(0, self._n_items, size=(positives.size, n_negatives))
            keep = ~np.isin(negatives, positives)
            diff = (items[positives][:, None, :] - items[negatives])[keep]  # (pairs, D)
            d_free, d_bias = diff[:, :free], diff[:, -1]

            def loss(x, d_free=d_free, d_bias=d_bias):
                margin = d_free @ x + d_bias
                # Mean over pairs: training's per-sample SGD applies the L2 weight once per triple.
                n_pairs = margin.shape[0]
                value = np.logaddexp(0.0, -margin).sum() / n_pairs + reg * (x @ x)
                grad = -(d_free.T @ (1.0 / (1.0 + np.exp(margin)))) / n_pairs + 2.0 * reg * x
                return value, grad

            solution = minimize(loss, np.zeros(free), jac=True, method="L-BFGS-B", options={"maxiter": max_steps})
            out[u, :free] = solution.x
        return out

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to rebuild the model bit for bit (weights and the content buffer)."""
        return {name: t.detach().cpu().contiguous() for name, t in self.net.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Inverse of :meth:`state_tensors` (shapes must match the model's)."""
        self.net.load_state_dict(tensors)
        self.net.eval()
        self._vectors = None


class BPRMF(FactorModel):
    """Bayesian personalised ranking matrix factorisation: ``score = p_u . q_i + b_i``.

    On the CPU with the BPR loss it trains with the native Hogwild SGD kernel
    (:mod:`mmrec_fast.models._bpr_kernels`; ``TrainConfig.threads`` threads, deterministic with one);
    with ``loss="softmax"``, on CUDA, or with ``trainer="torch"`` it trains with torch and Adam.
    Either way the weights live in the same tensors, so saving and loading do not depend on the trainer.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from mmrec_fast.models import BPRMF, TrainConfig
    >>> train = sp.random(50, 80, density=0.1, format="csr", random_state=0)
    >>> model = BPRMF(50, 80, TrainConfig(dim=8, epochs=2, progress=False)).fit(train)
    >>> model.user_vectors().shape, model.item_vectors().shape
    ((50, 9), (80, 9))
    """

    kind = "bpr"

    def __init__(self, n_users: int, n_items: int, config: TrainConfig | None = None):
        super().__init__(n_users, n_items, config)


class HybridMF(FactorModel):
    """VBPR-style hybrid: ``score = p_u . q_i + sum_m theta_u^(m) . (E_m f_i^(m)) + b_i``.

    The content term lets items with few interactions borrow strength from their text/image/audio
    vectors; each modality ``m`` has its own projection, so its share of a score is exact.
    """

    kind = "hybrid"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        features: np.ndarray,
        config: TrainConfig | None = None,
        *,
        feature_blocks=None,
    ):
        if features is None:
            raise ValueError("features is required for HybridMF (use BPRMF for an ID-only model)")
        super().__init__(n_users, n_items, config, features=features, feature_blocks=feature_blocks)
