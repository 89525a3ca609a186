"""The training loop shared by BPR-MF and the hybrid: sampled losses, Adam, early stopping."""

from __future__ import annotations

import copy
import time
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from ._net import FactorNet
from .config import TrainConfig

__all__ = ["train_factor_net", "resolve_device", "validation_ndcg"]


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


def validation_ndcg(net: FactorNet, train: sp.csr_matrix, validation: sp.csr_matrix, k: int = 10) -> float:
    """NDCG@k of the current weights on held-out positives, training items excluded (the engine ranks)."""
    from .. import topk
    from ..metrics import evaluate

    with torch.no_grad():
        users = net.users(torch.arange(net.n_users, device=net.item_id.weight.device)).cpu().numpy()
        items = net.items(torch.arange(net.n_items, device=net.item_id.weight.device)).cpu().numpy()
    ranked = topk(users, items, k, exclude=train).indices
    return float(evaluate(ranked, validation, ks=(k,), metrics=("ndcg",))[f"ndcg@{k}"])


def _batch_loss(net: FactorNet, users: torch.Tensor, positives: torch.Tensor, config: TrainConfig,
                sampler: _NegativeSampler, generator: torch.Generator) -> torch.Tensor:
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


def train_factor_net(net: FactorNet, train: sp.csr_matrix, config: TrainConfig, *,
                     validation: sp.csr_matrix | None = None, desc: str = "train") -> list[dict]:
    """Fit ``net`` on the positive pairs of ``train`` with Adam; return the per-epoch history.

    With ``validation`` (held-out positives, same shape), NDCG@10 is measured every ``eval_every``
    epochs with the engine (training items excluded); training stops after ``patience`` evaluations
    without improvement and the best epoch's weights are restored. Ctrl-C stops training cleanly
    with the best weights so far (a warning says so).

    Returns
    -------
    list of dict
        One entry per epoch: ``epoch``, ``loss`` (mean batch loss), ``seconds``, and
        ``val_ndcg@10`` when evaluated; the entry of the restored epoch has ``best=True``.
    """
    device = next(net.parameters()).device
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    coo = train.tocoo()
    all_users = torch.from_numpy(coo.row.astype(np.int64))
    all_items = torch.from_numpy(coo.col.astype(np.int64))
    n = len(all_users)
    if n == 0:
        raise ValueError("train has no interactions to learn from")
    sampler = _NegativeSampler(train, rng)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    history: list[dict] = []
    best_score, best_state, best_epoch, stale = -np.inf, None, 0, 0
    bar = tqdm(range(1, config.epochs + 1), desc=desc, unit="epoch", disable=not config.progress, leave=False)
    try:
        for epoch in bar:
            started = time.perf_counter()
            net.train()
            order = torch.randperm(n, generator=generator)
            total = 0.0
            for start in range(0, n, config.batch_size):
                batch = order[start:start + config.batch_size]
                loss = _batch_loss(net, all_users[batch].to(device), all_items[batch].to(device), config,
                                   sampler, generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * len(batch)
            net.eval()
            entry = {"epoch": epoch, "loss": total / n, "seconds": time.perf_counter() - started}
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
        warnings.warn(f"{desc}: interrupted after {len(history)} epoch(s); keeping the best weights so far",
                      RuntimeWarning, stacklevel=2)
    finally:
        bar.close()
    if best_state is not None:
        net.load_state_dict(best_state)
        for entry in history:
            if entry["epoch"] == best_epoch:
                entry["best"] = True
    net.eval()
    return history
