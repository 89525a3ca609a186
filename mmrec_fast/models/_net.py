"""The torch module behind BPR-MF and the hybrid: score = users(u) . items(i), split into blocks.

User side: ``[p_u | theta_u^(1) | ... | theta_u^(M) | 1]``; item side:
``[q_i | E_1 f_i^(1) | ... | E_M f_i^(M) | b_i]`` where ``f_i^(m)`` is item i's content vector of
modality m (a block of the fused feature matrix) and ``E_m`` a learned projection (VBPR's idea, one
projection per modality so a score splits exactly into ID, per-modality and bias parts). BPR-MF is
the same module with no modality.
"""

from __future__ import annotations

import numpy as np

from .._optional import require
from .base import ScoreBlock

torch = require("torch", extra="models", feature="BPR-MF and the hybrid model")

__all__ = ["FactorNet"]


class FactorNet(torch.nn.Module):
    """ID embeddings, optional per-modality projected content, item bias.

    Parameters
    ----------
    n_users, n_items : int
        Sizes of the ID tables.
    dim : int
        ID embedding size.
    features : ndarray (n_items, C) or None
        Fixed content vectors (a buffer, not trained).
    feature_blocks : list of ScoreBlock
        Column ranges of ``features``, one per modality (their names name the score blocks).
    content_dim : int
        Projected size of each modality.
    init_std : float
        Normal initialisation scale of the embeddings.
    generator : torch.Generator
        Source of the initial weights (seeded by the caller for reproducible training).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        dim: int,
        *,
        features: np.ndarray | None = None,
        feature_blocks: list[ScoreBlock] | None = None,
        content_dim: int = 32,
        init_std: float = 0.1,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.n_users, self.n_items, self.dim = int(n_users), int(n_items), int(dim)
        self.user_id = torch.nn.Embedding(n_users, dim)
        self.item_id = torch.nn.Embedding(n_items, dim)
        self.item_bias = torch.nn.Embedding(n_items, 1)
        torch.nn.init.normal_(self.user_id.weight, 0.0, init_std, generator=generator)
        torch.nn.init.normal_(self.item_id.weight, 0.0, init_std, generator=generator)
        torch.nn.init.zeros_(self.item_bias.weight)
        self.feature_blocks = list(feature_blocks or [])
        if features is not None:
            self.register_buffer("features", torch.as_tensor(np.ascontiguousarray(features, np.float32)))
            self.projections = torch.nn.ModuleList()
            for block in self.feature_blocks:
                width = block.stop - block.start
                proj = torch.nn.Linear(width, content_dim, bias=False)
                # 1/sqrt(width) keeps E f_i on the scale of the ID vectors for unit-norm f_i blocks.
                torch.nn.init.normal_(proj.weight, 0.0, 1.0 / np.sqrt(width), generator=generator)
                self.projections.append(proj)
            self.user_content = torch.nn.Embedding(n_users, content_dim * len(self.feature_blocks))
            torch.nn.init.normal_(self.user_content.weight, 0.0, init_std, generator=generator)
        else:
            self.features = None
            self.projections = torch.nn.ModuleList()
            self.user_content = None
        self.content_dim = int(content_dim)

    def users(self, index: torch.Tensor) -> torch.Tensor:
        """User-side vectors of the given user ids (last column: the constant 1 that meets the bias)."""
        parts = [self.user_id(index)]
        if self.user_content is not None:
            parts.append(self.user_content(index))
        parts.append(torch.ones(index.shape[0], 1, dtype=parts[0].dtype, device=parts[0].device))
        return torch.cat(parts, dim=1)

    def items(self, index: torch.Tensor) -> torch.Tensor:
        """Item-side vectors of the given item ids (last column: the item bias)."""
        parts = [self.item_id(index)]
        if self.features is not None:
            rows = self.features[index]
            for block, proj in zip(self.feature_blocks, self.projections):
                parts.append(proj(rows[:, block.start : block.stop]))
        parts.append(self.item_bias(index))
        return torch.cat(parts, dim=1)

    def score_blocks(self) -> list[ScoreBlock]:
        """Column blocks of the vectors :meth:`users` / :meth:`items` return."""
        out = [ScoreBlock("id", 0, self.dim)]
        start = self.dim
        for block in self.feature_blocks:
            out.append(ScoreBlock(block.name, start, start + self.content_dim))
            start += self.content_dim
        out.append(ScoreBlock("bias", start, start + 1))
        return out
