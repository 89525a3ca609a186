"""One front door for training every model kind, with settings chosen on validation carved from train.

:func:`train_model` builds and fits any kind of :data:`MODEL_KINDS` from its measured defaults
(:data:`DEFAULT_PARAMS`), or from a budgeted validation search (``tune=True``, see
:mod:`mmrec_fast.pipeline.tuning`); iterative models also pick their epoch count by early stopping on
held-out *training* entries and are then refit on all of train. The test split is never an argument.
What was chosen, and how, is attached to the model as ``model.tuning`` (saved in its metadata by the
CLI and the demo).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import fields, replace

import numpy as np
import scipy.sparse as sp

from ..models import (
    BPRMF,
    EASE,
    IALS,
    ContentIALS,
    ContentProfile,
    EASEIALSBlend,
    FactorModel,
    HybridMF,
    MostPop,
    Recommender,
    TrainConfig,
)
from .protocol import own_and_unseen

__all__ = [
    "holdout_entries",
    "validation_split",
    "defaults_for",
    "BINARY_DEFAULTS",
    "fit_with_early_stopping",
    "train_model",
    "fit_kind",
    "MODEL_KINDS",
    "CONTENT_KINDS",
    "DEFAULT_PARAMS",
    "SEARCH_SPACES",
]

#: What :func:`train_model` builds: BPR-MF, the VBPR-style hybrid, content profiles, EASE, iALS, the
#: content-aware iALS (new items scored from content), the EASE + iALS blend and popularity (the floor of
#: every table).
MODEL_KINDS = ("bpr", "hybrid", "content", "ease", "ials", "ials-content", "ease-ials", "mostpop")

#: Kinds that need item content (``features=``).
CONTENT_KINDS = ("hybrid", "content", "ials-content")

#: Kinds trained by :class:`~mmrec_fast.models.TrainConfig`-driven loops (early stopping on validation).
_CONFIG_KINDS = ("bpr", "hybrid")

# iALS's measured settings, shared by the kinds built on it (see DEFAULT_PARAMS / BINARY_DEFAULTS).
_IALS_RATINGS = {"dim": 128, "alpha0": 0.55, "reg": 0.67, "nu": 0.5, "epochs": 20, "use_values": True}
_IALS_BINARY = {"dim": 256, "alpha0": 1.0, "reg": 0.01, "nu": 1.0, "epochs": 16, "use_values": False}


def _blend(ease_reg: float, ials: dict) -> dict:
    """The blend's setting from its parts' (iALS's ``reg`` is the blend's ``ials_reg``). The EASE share is
    the best mean validation NDCG@10 of tune("ease-ials") over the splits carved with seeds 0, 1, 2
    (docs/quality.md, "EASE + iALS"); normalised scores let the binary setting reuse it."""
    parts = {("ials_reg" if key == "reg" else key): value for key, value in ials.items()}
    return {"weight": 0.15, "ease_reg": ease_reg, **parts}


#: The settings :func:`train_model` uses when given none, chosen on validation splits carved from
#: MovieLens-100K's Cornac-protocol *training* part (held-out ratings >= 4 relevant; the test split never
#: read): EASE and iALS with the ratings as values/confidences (``use_values``; binary input loses ~0.03
#: NDCG@10) from ``docs/models_ease_ials.md``, native BPR from ``docs/bpr_native.md`` (its epoch bound,
#: evaluation cadence and patience are the native trainer's defaults), each re-scored against the earlier
#: binary defaults by ``benchmarks/quality.py --search`` (``docs/benchmarks/quality_search.txt``).
#: ``ials-content`` shares iALS's (its warm factors are iALS's). The hybrid's search was cut after one
#: trial (209 s per trial on a 2-core machine): its defaults are the earlier pipeline default.
#: With a binary ``train`` (no ratings), ``use_values`` changes nothing.
DEFAULT_PARAMS: dict[str, dict] = {
    "bpr": {"dim": 64, "lr": 0.02, "reg": 0.02},
    "hybrid": {"dim": 64, "content_dim": 32, "loss": "softmax", "lr": 5e-3, "reg": 1e-3, "epochs": 60, "patience": 4},
    "content": {},
    "ease": {"reg": 5000.0, "use_values": True},
    "ials": dict(_IALS_RATINGS),
    "ials-content": dict(_IALS_RATINGS),  # its warm factors are iALS's
    "ease-ials": _blend(5000.0, _IALS_RATINGS),
    "mostpop": {"scale": "log"},
}

#: The defaults for implicit data (every stored value equal: nothing to use as ratings), where the rating
#: settings above do not carry over (EASE's ridge of 5000 suits a rating-valued Gram matrix): the best
#: binary settings of the same validation search (``docs/benchmarks/quality_search.txt``: EASE reg 200,
#: val NDCG@10 0.1792; iALS d 256, alpha0 1, reg 0.01, 16 epochs, 0.1771).
BINARY_DEFAULTS: dict[str, dict] = {
    "ease": {"reg": 200.0, "use_values": False},
    "ials": dict(_IALS_BINARY),
    "ials-content": dict(_IALS_BINARY),
    "ease-ials": _blend(200.0, _IALS_BINARY),
}


def defaults_for(kind: str, train: sp.spmatrix) -> dict:
    """The default setting of ``kind`` for this ``train``: :data:`BINARY_DEFAULTS` when its stored values
    are all equal (implicit feedback), else :data:`DEFAULT_PARAMS` (ratings)."""
    data = sp.csr_matrix(train).data
    data = data[data != 0]
    implicit = data.size == 0 or bool(np.all(data == data[0]))
    return dict(BINARY_DEFAULTS[kind] if implicit and kind in BINARY_DEFAULTS else DEFAULT_PARAMS[kind])


_IALS_SPACE = {
    "dim": [64, 128, 256],
    "alpha0": [0.1, 0.3, 0.55, 1.0],
    "reg": [0.1, 0.3, 0.67, 1.0],
    "nu": [0.5, 1.0],
    "epochs": [10, 20],
}

#: The grids :func:`mmrec_fast.pipeline.tune` samples from by default (around the defaults).
SEARCH_SPACES: dict[str, dict] = {
    "bpr": {"dim": [32, 64, 128, 200], "lr": [0.01, 0.02, 0.05], "reg": [0.005, 0.01, 0.02, 0.04]},
    "hybrid": {"dim": [32, 64, 128], "lr": [2e-3, 5e-3, 1e-2], "reg": [1e-4, 1e-3, 1e-2]},
    "content": {},
    "ease": {"reg": [200.0, 500.0, 1000.0, 2000.0, 3000.0, 5000.0, 8000.0], "use_values": [True, False]},
    "ials": _IALS_SPACE,
    "ials-content": _IALS_SPACE,  # the same warm factors, the same search
    "ease-ials": {"weight": [0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5], "ease_reg": [2000.0, 3000.0, 5000.0, 8000.0]},
    "mostpop": {"scale": ["log", "count"]},
}

_CONFIG_FIELDS = {f.name for f in fields(TrainConfig)}


def holdout_entries(matrix: sp.spmatrix, fraction: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split the stored entries of ``matrix`` at random into (kept, held out), seeded."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    coo = sp.coo_matrix(matrix)
    held = np.random.default_rng(seed).random(coo.nnz) < fraction

    def part(mask):
        out = sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=coo.shape)
        out.sort_indices()
        return out

    return part(~held), part(held)


def validation_split(train: sp.spmatrix, fraction: float = 0.1, seed: int = 0, *, relevance: float | None = None):
    """Carve validation data out of ``train``: ``(fit_part, val_positives, val_exclude)``, seeded.

    ``fit_part`` (with ``train``'s values) is what a model learns from. ``val_positives`` (ones) are the held-out
    entries valued at least ``relevance`` (all of them when None) on items the fit part has seen;
    held-out entries below the threshold stay candidates, as test rows rated below it do.
    ``val_exclude`` mirrors the test protocol on the fit part: each user's own fit-part items plus
    every item with no fit-part interaction (a model cannot have learned it).
    """
    if not sp.issparse(train):
        raise TypeError(f"train must be a scipy sparse users x items matrix, got {type(train).__name__}")
    fit_part, held = holdout_entries(train, fraction, seed)
    fit_part.eliminate_zeros()
    coo = held.tocoo()
    seen = np.diff(fit_part.tocsc().indptr) > 0
    keep = seen[coo.col] & (coo.data != 0)
    if relevance is not None:
        keep &= coo.data >= float(relevance)
    val = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (coo.row[keep], coo.col[keep])), shape=train.shape)
    val.sort_indices()
    if fit_part.nnz == 0 or val.nnz == 0:
        raise ValueError(
            f"train: {held.nnz + fit_part.nnz} entries leave no fit part or no validation "
            f"positive at fraction={fraction}" + ("" if relevance is None else f", relevance={relevance}")
        )
    return fit_part, val, own_and_unseen(fit_part, np.flatnonzero(~seen))


def _best_epoch(history: list[dict]) -> int:
    return next((e["epoch"] for e in history if e.get("best")), len(history))


def fit_with_early_stopping(
    make_model: Callable[[TrainConfig], FactorModel],
    train: sp.csr_matrix,
    config: TrainConfig,
    *,
    val_fraction: float = 0.1,
) -> FactorModel:
    """Choose the number of epochs by early stopping on held-out training entries, then refit.

    Parameters
    ----------
    make_model : callable
        ``make_model(config) -> FactorModel`` (unfitted), e.g. ``lambda c: BPRMF(n_users, n_items, c)``.
    train : csr
        All training interactions.
    config : TrainConfig
        ``epochs`` is the upper bound of the search; ``seed`` seeds the validation draw too.
    val_fraction : float
        Share of training entries held out for the search.

    Returns
    -------
    FactorModel
        Refit on all of ``train`` for the best epoch count; ``model.search_history`` holds the
        search run's per-epoch history (with ``val_ndcg@10``), ``model.history`` the refit's.
    """
    fit_part, val_part = holdout_entries(train, val_fraction, config.seed)
    search = make_model(config).fit(fit_part, validation=val_part)
    final = make_model(replace(config, epochs=max(1, _best_epoch(search.history)))).fit(train)
    final.search_history = search.history
    return final


def _check_kind(kind: str, features) -> None:
    if not isinstance(kind, str) or kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")
    if kind in CONTENT_KINDS and features is None:
        raise ValueError(f"features are required for the {kind!r} model")


def _make(
    kind: str, n_users: int, n_items: int, params: dict, *, features, feature_blocks, seed: int, progress: bool
) -> Recommender:
    """An unfitted model of ``kind`` with ``params`` (keys as in :data:`DEFAULT_PARAMS`)."""
    if kind in _CONFIG_KINDS:
        unknown = sorted(set(params) - _CONFIG_FIELDS)
        if unknown:
            raise ValueError(f"params: unknown option(s) {unknown} for {kind!r}; known: TrainConfig fields")
        config = TrainConfig.from_dict({"seed": seed, "progress": progress, **params})
        if kind == "bpr":
            return BPRMF(n_users, n_items, config)
        return HybridMF(n_users, n_items, features, config, feature_blocks=feature_blocks)
    try:
        if kind == "content":
            return ContentProfile(features, feature_blocks=feature_blocks, **params)
        if kind == "ease":
            return EASE(n_users, n_items, **params)
        if kind == "ials":
            return IALS(n_users, n_items, seed=seed, **params)
        if kind == "ials-content":
            return ContentIALS(n_users, n_items, features, feature_blocks=feature_blocks, seed=seed, **params)
        if kind == "ease-ials":
            return EASEIALSBlend(n_users, n_items, seed=seed, **params)
        return MostPop(n_users, n_items, **params)
    except TypeError as exc:  # an unknown keyword: say which argument, as a ValueError
        raise ValueError(f"params: {exc}") from None


def fit_kind(
    kind: str,
    n_users: int,
    n_items: int,
    train: sp.spmatrix,
    params: dict,
    *,
    features=None,
    feature_blocks=None,
    seed: int = 0,
    validation: sp.spmatrix | None = None,
    progress: bool = False,
) -> tuple[Recommender, dict]:
    """Fit one model of ``kind`` with exactly ``params`` on ``train``.

    With ``validation`` (held-out positives carved from the training data), the TrainConfig kinds
    early-stop on it and the returned setting's ``epochs`` is the best epoch count; other kinds
    ignore it.

    Returns
    -------
    model : Recommender
        Fitted on ``train``.
    chosen : dict
        ``params`` as a refit on more data should use them.
    """
    _check_kind(kind, features)
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict, got {type(params).__name__}")
    model = _make(
        kind, n_users, n_items, params, features=features, feature_blocks=feature_blocks, seed=seed, progress=progress
    )
    chosen = dict(params)
    if kind in _CONFIG_KINDS and validation is not None:
        model.fit(train, validation=validation)
        chosen["epochs"] = max(1, _best_epoch(model.history))
    else:
        model.fit(train)
    return model, chosen


def train_model(
    kind: str,
    n_users: int,
    n_items: int,
    train: sp.csr_matrix,
    config: TrainConfig | None = None,
    *,
    features=None,
    feature_blocks=None,
    params: dict | None = None,
    tune: bool = False,
    budget=None,
    seed: int | None = None,
    val_fraction: float = 0.1,
    relevance: float | None = None,
    progress: bool = False,
    log=None,
) -> Recommender:
    """Build and fit one model of ``kind`` the pipeline's way (the demo, CLI and benchmarks use it).

    Parameters
    ----------
    kind : str
        One of :data:`MODEL_KINDS`.
    n_users, n_items : int
        Size of the id spaces (``train``'s shape).
    train : scipy sparse (n_users, n_items)
        Training interactions (stored entries are positives). The only data read.
    config : TrainConfig, optional
        Full training settings of ``"bpr"``/``"hybrid"`` (then used as given, with early stopping;
        ``params`` and ``tune`` do not apply). Other kinds take only its ``seed`` from it.
    features, feature_blocks
        Item content (array or ``encoders.fuse`` output) for :data:`CONTENT_KINDS`.
    params : dict, optional
        Overrides of the kind's defaults (:func:`defaults_for`: :data:`DEFAULT_PARAMS` for rating-valued
        ``train``, :data:`BINARY_DEFAULTS` for implicit data).
    tune : bool
        Search settings first (:func:`mmrec_fast.pipeline.tune` on a validation share of ``train``,
        starting from the defaults and ``params``), then refit the best on all of ``train``.
    budget : Budget, int or dict, optional
        The search's budget (default 12 trials).
    seed : int, optional
        Seeds the validation draw, the search and the fit (default 0, or ``config.seed``).
    val_fraction : float
        Share of the training entries held out for early stopping / the search.
    relevance : float, optional
        ``train``'s values are ratings and held-out entries rated at least this are the validation
        positives (mirroring the test protocol); the models still learn from every entry as a positive.
    progress : bool
        Progress bars of the training loops.
    log : callable, optional
        Receives one line per search trial.

    Returns
    -------
    Recommender
        Fitted on all of ``train``; ``model.tuning`` records the settings and how they were chosen
        (``source``: ``"config"``, ``"defaults"`` or ``"search"``; the search's trials).
    """
    _check_kind(kind, features)
    if not sp.issparse(train):
        raise TypeError(f"train must be a scipy sparse users x items matrix, got {type(train).__name__}")
    if train.shape != (n_users, n_items):
        raise ValueError(f"train has shape {train.shape}, expected (n_users, n_items) = {(n_users, n_items)}")
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if seed is None:
        seed = config.seed if config is not None else 0
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    # The values go through: models with use_values learn from them (ratings as confidences), the
    # others treat every stored entry as a positive.
    train = sp.csr_matrix(train, dtype=np.float32, copy=True)
    train.eliminate_zeros()
    ratings = train
    if kind in _CONFIG_KINDS and config is not None:
        if params or tune:
            raise ValueError("config: pass either a full TrainConfig or params/tune, not both")
        config = replace(config, seed=int(seed))
        if kind == "bpr":
            model = fit_with_early_stopping(
                lambda c: BPRMF(n_users, n_items, c), train, config, val_fraction=val_fraction
            )
        else:
            model = fit_with_early_stopping(
                lambda c: HybridMF(n_users, n_items, features, c, feature_blocks=feature_blocks),
                train,
                config,
                val_fraction=val_fraction,
            )
        model.tuning = {"source": "config", "params": model.config.to_dict(), "seed": int(seed)}
        return model
    chosen = {**defaults_for(kind, train), **(params or {})}
    record: dict = {"source": "defaults", "seed": int(seed), "val_fraction": val_fraction, "relevance": relevance}
    if tune:
        from .tuning import Budget
        from .tuning import tune as run_search

        budget = Budget.coerce(budget)
        chosen, trials = run_search(
            kind,
            ratings,
            budget=budget,
            seed=seed,
            features=features,
            feature_blocks=feature_blocks,
            defaults=chosen,
            val_fraction=val_fraction,
            relevance=relevance,
            log=log,
        )
        record.update(
            source="search",
            budget={"trials": budget.trials, "seconds": budget.seconds},
            trials=[t.to_dict() for t in trials],
        )
    search_history = None
    if kind in _CONFIG_KINDS and not tune:
        # Defaults: the epoch count still comes from early stopping on held-out training entries.
        fit_part, val, _ = validation_split(ratings, val_fraction, seed, relevance=relevance)
        search, chosen = fit_kind(
            kind,
            n_users,
            n_items,
            fit_part,
            chosen,
            features=features,
            feature_blocks=feature_blocks,
            seed=seed,
            validation=val,
            progress=progress,
        )
        search_history = search.history
    model, _ = fit_kind(
        kind,
        n_users,
        n_items,
        train,
        chosen,
        features=features,
        feature_blocks=feature_blocks,
        seed=seed,
        progress=progress,
    )
    if search_history is not None:
        model.search_history = search_history
    record["params"] = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in chosen.items()}
    model.tuning = record
    return model
