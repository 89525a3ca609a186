"""Training settings shared by the trained models (BPR-MF and the hybrid)."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, fields, replace

__all__ = ["TrainConfig", "TRAINERS", "TRAINER_DEFAULTS"]

_LOSSES = ("bpr", "softmax")

#: ``"native"``: Hogwild SGD in Numba (BPR-MF with the BPR loss on the CPU); ``"torch"``: Adam over
#: mini-batches (any model, loss and device); ``"auto"``: native where it applies, else torch.
TRAINERS = ("auto", "native", "torch")

#: What ``lr``/``reg``/``epochs``/... left as None mean for each trainer: an SGD step per triple and an
#: Adam step per batch are different quantities, so one number cannot serve both. The native values
#: were chosen on a validation split carved from MovieLens-100K's training data (docs/bpr_native.md);
#: with early stopping they beat Cornac's tuned BPR on the test split.
#: Early stopping: a native epoch is cheap and noisy (plain SGD), so it is judged every 5 epochs with
#: a patience of 6 evaluations; every epoch with patience 4 stops it long before its best (measured:
#: NDCG@10 0.289 instead of 0.327 on the same split).
TRAINER_DEFAULTS = {
    "torch": {"lr": 5e-3, "reg": 1e-3, "epochs": 60, "eval_every": 1, "patience": 4},
    "native": {"lr": 0.02, "reg": 0.02, "epochs": 300, "eval_every": 5, "patience": 6},
}


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a factor model and its training loop.

    Parameters
    ----------
    dim : int
        ID embedding size (columns of the ID block).
    content_dim : int
        Size of each modality's projected block in the hybrid (ignored by BPR-MF).
    loss : {"bpr", "softmax"}
        ``"bpr"``: pairwise ``-log sigmoid(s_ui - s_uj)`` with one uniformly sampled negative ``j``
        per positive. ``"softmax"``: cross-entropy of the positive against ``n_negatives`` uniformly
        sampled items shared by the batch (the full catalogue when ``n_negatives >= n_items``).
    n_negatives : int
        Negatives per batch for the softmax loss.
    epochs : int or None
        Upper bound on passes over the training interactions (the native trainer draws as many
        (user, positive, negative) triples per epoch as there are positives); None: the trainer's
        default in :data:`TRAINER_DEFAULTS`.
    batch_size : int
        Positive interactions per optimiser step (torch trainer only; the native trainer steps per triple).
    lr : float or None
        Adam learning rate (torch) or SGD step (native); None: the trainer's default in
        :data:`TRAINER_DEFAULTS`.
    reg : float or None
        L2 penalty on the vectors (and, natively, the item biases) each step touches; None: the
        trainer's default in :data:`TRAINER_DEFAULTS`.
    init_std : float
        Standard deviation of the normal initialisation of embeddings.
    patience : int or None
        Early stopping: stop after this many evaluations without a better validation NDCG@10; the
        best epoch's weights are restored. Ignored when no validation split is given. None: the
        trainer's default.
    eval_every : int or None
        Evaluate on the validation split every this many epochs; None: the trainer's default.
    seed : int
        Seeds initialisation, shuffling and negative sampling. CPU training is then deterministic,
        except the native trainer with ``threads != 1`` (Hogwild: threads race on shared rows).
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or ``"auto"`` (CUDA when available).
    trainer : {"auto", "native", "torch"}
        See :data:`TRAINERS`. ``"native"`` where it does not apply (softmax loss, content, CUDA) is an error.
    threads : int
        Threads of the native trainer; 0: Numba's current thread count. The default 1 keeps seeded
        training deterministic (the documented CPU contract); more threads run Hogwild (lock-free
        updates racing on shared rows), faster on large logs but not reproducible bit for bit.
    progress : bool
        Show a tqdm progress bar over epochs.
    """

    dim: int = 64
    content_dim: int = 32
    loss: str = "bpr"
    n_negatives: int = 4096
    epochs: int | None = None
    batch_size: int = 2048
    lr: float | None = None
    reg: float | None = None
    init_std: float = 0.1
    patience: int | None = None
    eval_every: int | None = None
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    trainer: str = "auto"
    threads: int = 1

    def __post_init__(self):
        positive_ints = ("dim", "content_dim", "n_negatives", "epochs", "batch_size", "patience", "eval_every")
        for name in positive_ints:
            value = getattr(self, name)
            if value is None and name in ("epochs", "patience", "eval_every"):
                continue
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))  # NumPy scalars from a search -> plain JSON
        if self.loss not in _LOSSES:
            raise ValueError(f"TrainConfig.loss must be one of {_LOSSES}, got {self.loss!r}")
        if self.trainer not in TRAINERS:
            raise ValueError(f"TrainConfig.trainer must be one of {TRAINERS}, got {self.trainer!r}")
        if not isinstance(self.threads, numbers.Integral) or isinstance(self.threads, bool) or self.threads < 0:
            raise ValueError(f"TrainConfig.threads must be an integer >= 0, got {self.threads!r}")
        object.__setattr__(self, "threads", int(self.threads))
        for name, optional, strict in (("lr", True, True), ("init_std", False, True), ("reg", True, False)):
            value = getattr(self, name)
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"TrainConfig.{name} must be a finite number, got {value!r}")
            if value < 0 or (strict and value == 0):
                raise ValueError(f"TrainConfig.{name} must be {'> 0' if strict else '>= 0'}, got {value!r}")
            object.__setattr__(self, name, float(value))

    def for_trainer(self, trainer: str) -> TrainConfig:
        """This config with the fields left as None (``lr``, ``reg``, ``epochs``, ``eval_every``,
        ``patience``) replaced by ``trainer``'s defaults in :data:`TRAINER_DEFAULTS`.

        Parameters
        ----------
        trainer : {"native", "torch"}
            The trainer that will run (already resolved from ``"auto"``).
        """
        if trainer not in TRAINER_DEFAULTS:
            raise ValueError(f"trainer must be one of {tuple(TRAINER_DEFAULTS)}, got {trainer!r}")
        defaults = TRAINER_DEFAULTS[trainer]
        return replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})

    def to_dict(self) -> dict:
        """Plain-JSON form (saved with a model)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a mapping (e.g. a TOML/YAML section); unknown keys are an error, not ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**values)
