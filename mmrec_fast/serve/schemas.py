"""Request and response bodies of the HTTP API (pydantic models: validation and the OpenAPI document).

Ids are JSON integers or strings, whichever the model's id maps hold (no silent coercion: ``"7"`` is not
``7``). Unknown fields are refused, so a misspelt option is a 422 naming it rather than ignored.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

__all__ = [
    "RecommendRequest",
    "SimilarRequest",
    "ReloadRequest",
    "ItemsRequest",
    "NewItem",
    "ListResponse",
    "AdminResponse",
]

ItemId = StrictInt | StrictStr
_MAX_IDS = 1_000_000  # the body-size limit is the real bound; this keeps a single list sane


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Filters(_Strict):
    k: int = Field(10, ge=1, description="list length (at most the server's --max-k)")
    allow: list[ItemId] | None = Field(None, max_length=_MAX_IDS, description="only these items are eligible")
    ban: list[ItemId] | None = Field(None, max_length=_MAX_IDS, description="these items are never eligible")
    candidates: list[ItemId] | None = Field(
        None, max_length=_MAX_IDS, description="this query's candidate list (intersected with allow)"
    )
    temperature: float = Field(1.0, gt=0, allow_inf_nan=False, description="softmax temperature of the probabilities")


class RecommendRequest(_Filters):
    """``POST /recommend``: a known user, or the history of a user the model has not seen (folded in)."""

    user: ItemId | None = Field(None, description="external user id")
    history: list[ItemId] | None = Field(
        None,
        max_length=5_000,
        description="items the user interacted with (required for an unknown user; fold-in memory grows with it)",
    )
    exclude_seen: bool = Field(True, description="leave out the user's training items and the given history")
    explain: bool = Field(False, description="add per-block score contributions and 'because you liked'")
    n_because: int = Field(3, ge=0, le=50, description="past items listed per recommendation when explain")


class SimilarRequest(_Filters):
    """``POST /similar``: items most like the given item(s) (the mean of their vectors)."""

    items: list[ItemId] = Field(..., min_length=1, max_length=10_000, description="query item ids")
    metric: Literal["dot", "cosine"] = "dot"
    exclude_query: bool = Field(True, description="leave the query items out of the results")


class ReloadRequest(_Strict):
    """``POST /admin/reload``: a model directory to load and swap in."""

    model_dir: str = Field(..., min_length=1)


class NewItem(_Strict):
    """An item to add (new id) or update (known id)."""

    id: ItemId
    vector: list[float] = Field(..., description="the item's vector (the model's width D, finite)")
    label: str | None = None


class ItemsRequest(_Strict):
    """``POST /admin/items``: upserts and removals, applied together as one new snapshot."""

    add: list[NewItem] = Field(default_factory=list, max_length=100_000)
    remove: list[ItemId] = Field(default_factory=list, max_length=_MAX_IDS)


class Because(BaseModel):
    item: ItemId
    label: str | None
    similarity: float


class ListItem(BaseModel):
    item: ItemId
    label: str | None
    score: float
    probability: float = Field(description="softmax probability over the whole eligible catalogue")
    contributions: dict[str, float] | None = Field(None, description="exact per-block parts of the score")
    because_you_liked: list[Because] | None = None


class ListResponse(BaseModel):
    items: list[ListItem]
    log_normalizer: float | None = Field(description="log of the softmax denominator; null when nothing is eligible")
    generation: int = Field(description="which loaded model/catalogue answered")
    user: ItemId | None = None
    folded_in: bool | None = None


class AdminResponse(BaseModel):
    generation: int
    items: int
    source: str
