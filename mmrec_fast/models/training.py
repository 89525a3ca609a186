"""The training loop shared by BPR-MF and the hybrid: one epoch runner per trainer, early stopping.

Two trainers run an epoch (see :data:`mmrec_fast.models.config.TRAINERS`): the native one (Hogwild SGD
in Numba, :mod:`._bpr_kernels`) for BPR-MF with the BPR loss on the CPU, and torch (sampled BPR or
softmax losses, Adam, CPU or GPU) for everything else. Both update the same :class:`FactorNet`
parameters (the native kernel writes into the CPU tensors' memory), so saving, early stopping and the
vectors handed to the engine do not depend on which trainer ran.
"""

from __future__ import annotations

import contextlib
import copy
import time
import warnings

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from .._optional import require
from ._net import FactorNet
from .config import TrainConfig

torch = require("torch", extra="models", feature="training BPR-MF and the hybrid model")

__all__ = ["train_factor_net", "resolve_device", "resolve_trainer", "validation_ndcg"]


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no CUDA device; use 'cpu' or 'auto'")
    return dev


class _NegativeSampler:
    """Uniform negatives, resampled a few times when they hit one of the user's training items.

    Membership is a binary search over the sorted keys ``user * n_items + item`` (no dense matrix).
    After ``rounds`` redraws a remaining collision is kept: with a 6%-dense MovieLens row the chance
    is ~1e-5 per draw, and an occasional positive used as negative only adds a little noise.
    """

    def __init__(self, train: sp.csr_matrix, rng: np.random.Generator, rounds: int = 5):
        coo = train.tocoo()
        self.n_items = train.shape[1]
        self.keys = np.unique(coo.row.astype(np.int64) * self.n_items + coo.col.astype(np.int64))
        self.rng = rng
        self.rounds = rounds

    def _is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.n_items + items
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return self.keys[pos] == keys

    def sample(self, users: np.ndarray) -> np.ndarray:
        items = self.rng.integers(0, self.n_items, size=len(users))
        for _ in range(self.rounds):
            bad = self._is_positive(users, items)
            if not bad.any():
                break
            items[bad] = self.rng.integers(0, self.n_items, size=int(bad.sum()))
        return items


def _native_obstacle(net: FactorNet, config: TrainConfig) -> str | None:
    """Why the native trainer cannot train ``net`` with ``config`` (None when it can)."""
    if config.loss != "bpr":
        return f"loss={config.loss!r} (the native trainer implements the BPR loss)"
    if net.features is not None:
        return "the model has content features (the native trainer trains ID embeddings only)"
    if net.item_id.weight.device.type != "cpu":
        return f"device={config.device!r} (the native trainer runs on the CPU)"
    return None


def resolve_trainer(net: FactorNet, config: TrainConfig) -> str:
    """``"native"`` or ``"torch"``: what ``config.trainer`` means for ``net``.

    ``"auto"`` picks native where it applies (BPR loss, no content, CPU) and torch otherwise;
    an explicit ``"native"`` that does not apply is a ``ValueError`` saying why.
    """
    obstacle = _native_obstacle(net, config)
    if config.trainer == "native" and obstacle is not None:
        raise ValueError(f"TrainConfig.trainer='native' cannot train this model: {obstacle}; use 'torch' or 'auto'")
    if config.trainer == "torch" or obstacle is not None:
        return "torch"
    return "native"


@contextlib.contextmanager
def _numba_threads(threads: int):
    """Run the enclosed Numba calls on ``threads`` threads (0: leave as is), restoring the count after."""
    import numba

    before = numba.get_num_threads()
    if threads:
        try:
            numba.set_num_threads(threads)
        except ValueError as err:
            raise ValueError(
                f"TrainConfig.threads={threads} exceeds Numba's pool "
                f"(NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS})"
            ) from err
    try:
        yield numba.get_num_threads()
    finally:
        numba.set_num_threads(before)


class _NativeBPREpochs:
    """Hogwild SGD epochs of BPR, run by the Numba kernel directly on the net's CPU parameter memory."""

    def __init__(self, net: FactorNet, train: sp.csr_matrix, config: TrainConfig):
        from . import _bpr_kernels

        self.kernels = _bpr_kernels
        # Views of the parameters (no copy): the kernel's writes are the model's weights.
        self.users = net.user_id.weight.detach().numpy()
        self.items = net.item_id.weight.detach().numpy()
        self.bias = net.item_bias.weight.detach().numpy().reshape(-1)
        for name, array in (("user", self.users), ("item", self.items), ("bias", self.bias)):
            if array.dtype != np.float32 or not array.flags.c_contiguous:
                raise TypeError(f"native trainer: the {name} table must be contiguous float32, got {array.dtype}")
        if max(train.nnz, train.shape[1]) >= 2**31:
            raise ValueError("train: the native trainer handles fewer than 2**31 positives and items")
        # No copies when the CSR already has these dtypes (10M positives: 40 MB saved per array).
        self.indptr = train.indptr.astype(np.int64, copy=False)
        self.indices = train.indices.astype(np.int32, copy=False)
        self.user_of = np.repeat(np.arange(train.shape[0], dtype=np.int32), np.diff(self.indptr))
        self.config = config

    def run(self, epoch: int) -> dict:
        config = self.config
        with _numba_threads(config.threads) as threads:
            seeds = self.kernels.epoch_seeds(config.seed, epoch, threads)
            loss, steps, skipped = self.kernels.bpr_epoch(
                self.users,
                self.items,
                self.bias,
                self.indptr,
                self.indices,
                self.user_of,
                len(self.indices),
                config.lr,
                config.reg,
                seeds,
                self.kernels.MAX_TRIES,
            )
        done = int(steps.sum())
        return {"loss": float(loss.sum()) / max(done, 1), "skipped": int(skipped.sum())}


class _TorchEpochs:
    """Mini-batch epochs with Adam over the sampled BPR or softmax loss (any model, CPU or GPU)."""

    def __init__(self, net: FactorNet, train: sp.csr_matrix, config: TrainConfig):
        self.net, self.config = net, config
        self.device = next(net.parameters()).device
        self.generator = torch.Generator().manual_seed(config.seed)
        coo = train.tocoo()
        self.all_users = torch.from_numpy(coo.row.astype(np.int64))
        self.all_items = torch.from_numpy(coo.col.astype(np.int64))
        self.sampler = _NegativeSampler(train, np.random.default_rng(config.seed))
        self.optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)

    def run(self, epoch: int) -> dict:
        n = len(self.all_users)
        self.net.train()
        order = torch.randperm(n, generator=self.generator)
        total = 0.0
        for start in range(0, n, self.config.batch_size):
            batch = order[start : start + self.config.batch_size]
            loss = _batch_loss(
                self.net,
                self.all_users[batch].to(self.device),
                self.all_items[batch].to(self.device),
                self.config,
                self.sampler,
                self.generator,
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * len(batch)
        self.net.eval()
        return {"loss": total / n}


def validation_ndcg(net: FactorNet, train: sp.csr_matrix, validation: sp.csr_matrix, k: int = 10) -> float:
    """NDCG@k of the current weights on held-out positives, training items excluded (the engine ranks)."""
    from .. import topk
    from ..metrics import evaluate

    with torch.no_grad():
        users = net.users(torch.arange(net.n_users, device=net.item_id.weight.device)).cpu().numpy()
        items = net.items(torch.arange(net.n_items, device=net.item_id.weight.device)).cpu().numpy()
    ranked = topk(users, items, k, exclude=train).indices
    return float(evaluate(ranked, validation, ks=(k,), metrics=("ndcg",))[f"ndcg@{k}"])


def _batch_loss(
    net: FactorNet,
    users: torch.Tensor,
    positives: torch.Tensor,
    config: TrainConfig,
    sampler: _NegativeSampler,
    generator: torch.Generator,
) -> torch.Tensor:
    user_vec = net.users(users)
    pos_vec = net.items(positives)
    # The constant-1 user column meets the item bias; it is not a parameter, so it is not penalised.
    penalty = user_vec[:, :-1].pow(2).sum(1) + pos_vec.pow(2).sum(1)
    if config.loss == "bpr":
        negatives = torch.from_numpy(sampler.sample(users.cpu().numpy())).to(users.device)
        neg_vec = net.items(negatives)
        diff = (user_vec * (pos_vec - neg_vec)).sum(1)
        penalty = penalty + neg_vec.pow(2).sum(1)
        return -torch.nn.functional.logsigmoid(diff).mean() + config.reg * penalty.mean()
    n_items = net.n_items
    if config.n_negatives >= n_items:
        # The whole catalogue fits: exact softmax cross-entropy.
        logits = user_vec @ net.items(torch.arange(n_items, device=users.device)).T
        return torch.nn.functional.cross_entropy(logits, positives) + config.reg * penalty.mean()
    negatives = torch.randint(0, n_items, (config.n_negatives,), generator=generator).to(users.device)
    neg_logits = user_vec @ net.items(negatives).T
    # A sampled negative equal to the row's own positive would be counted against itself.
    neg_logits = neg_logits.masked_fill(negatives[None, :] == positives[:, None], float("-inf"))
    pos_logit = (user_vec * pos_vec).sum(1, keepdim=True)
    logits = torch.cat([pos_logit, neg_logits], dim=1)
    target = torch.zeros(len(users), dtype=torch.long, device=users.device)
    return torch.nn.functional.cross_entropy(logits, target) + config.reg * penalty.mean()


def train_factor_net(
    net: FactorNet,
    train: sp.csr_matrix,
    config: TrainConfig,
    *,
    validation: sp.csr_matrix | None = None,
    desc: str = "train",
) -> list[dict]:
    """Fit ``net`` on the positive pairs of ``train``; return the per-epoch history.

    The trainer is :func:`resolve_trainer`'s choice; ``lr``/``reg`` left as None take its defaults.
    With ``validation`` (held-out positives, same shape), NDCG@10 is measured every ``eval_every``
    epochs with the engine (training items excluded); training stops after ``patience`` evaluations
    without improvement and the best epoch's weights are restored. Ctrl-C stops training cleanly
    with the best weights so far (a warning says so).

    Returns
    -------
    list of dict
        One entry per epoch: ``epoch``, ``trainer``, ``loss`` (torch: mean batch loss with its penalty;
        native: mean ``-ln sigmoid(x_uij)`` before each step, penalty excluded), ``seconds``, natively
        ``skipped`` (triples whose negative draws all hit positives), and ``val_ndcg@10`` when
        evaluated; the entry of the restored epoch has ``best=True``.
    """
    if train.nnz == 0:
        raise ValueError("train has no interactions to learn from")
    trainer = resolve_trainer(net, config)
    config = config.for_trainer(trainer)
    runner = _NativeBPREpochs(net, train, config) if trainer == "native" else _TorchEpochs(net, train, config)
    history: list[dict] = []
    best_score, best_state, best_epoch, stale = -np.inf, None, 0, 0
    bar = tqdm(range(1, config.epochs + 1), desc=desc, unit="epoch", disable=not config.progress, leave=False)
    try:
        for epoch in bar:
            started = time.perf_counter()
            stats = runner.run(epoch)
            net.eval()
            entry = {"epoch": epoch, "trainer": trainer, **stats, "seconds": time.perf_counter() - started}
            history.append(entry)
            if validation is not None and epoch % config.eval_every == 0:
                score = validation_ndcg(net, train, validation)
                entry["val_ndcg@10"] = score
                if score > best_score:
                    best_score, best_epoch, stale = score, epoch, 0
                    best_state = copy.deepcopy(net.state_dict())
                else:
                    stale += 1
                bar.set_postfix(loss=f"{entry['loss']:.4f}", val_ndcg10=f"{score:.4f}", best=best_epoch)
                if stale >= config.patience:
                    break
            else:
                bar.set_postfix(loss=f"{entry['loss']:.4f}")
    except KeyboardInterrupt:
        warnings.warn(
            f"{desc}: interrupted after {len(history)} epoch(s); keeping the best weights so far",
            RuntimeWarning,
            stacklevel=2,
        )
    finally:
        bar.close()
    if best_state is not None:
        # load_state_dict copies into the existing tensors: the native views stay valid.
        net.load_state_dict(best_state)
        for entry in history:
            if entry["epoch"] == best_epoch:
                entry["best"] = True
    net.eval()
    return history
