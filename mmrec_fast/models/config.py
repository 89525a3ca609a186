"""Training settings shared by the trained models (BPR-MF and the hybrid)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

__all__ = ["TrainConfig"]

_LOSSES = ("bpr", "softmax")


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
    epochs : int
        Upper bound on passes over the training interactions.
    batch_size : int
        Positive interactions per optimiser step.
    lr : float
        Adam learning rate.
    reg : float
        L2 penalty on the user and item vectors of each batch (per example).
    init_std : float
        Standard deviation of the normal initialisation of embeddings.
    patience : int
        Early stopping: stop after this many evaluations without a better validation NDCG@10; the
        best epoch's weights are restored. Ignored when no validation split is given.
    eval_every : int
        Evaluate on the validation split every this many epochs.
    seed : int
        Seeds initialisation, shuffling and negative sampling (CPU training is then deterministic).
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, or ``"auto"`` (CUDA when available).
    progress : bool
        Show a tqdm progress bar over epochs.
    """

    dim: int = 64
    content_dim: int = 32
    loss: str = "bpr"
    n_negatives: int = 4096
    epochs: int = 60
    batch_size: int = 2048
    lr: float = 5e-3
    reg: float = 1e-3
    init_std: float = 0.1
    patience: int = 4
    eval_every: int = 1
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self):
        positive_ints = ("dim", "content_dim", "n_negatives", "epochs", "batch_size", "patience", "eval_every")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if self.loss not in _LOSSES:
            raise ValueError(f"TrainConfig.loss must be one of {_LOSSES}, got {self.loss!r}")
        for name in ("lr", "init_std"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"TrainConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not float(self.reg) >= 0:
            raise ValueError(f"TrainConfig.reg must be >= 0, got {self.reg!r}")

    def to_dict(self) -> dict:
        """Plain-JSON form (saved with a model)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a mapping (e.g. a TOML/YAML section); unknown keys are an error, not ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**values)
