"""Hyper-parameter search on a validation split carved from the training data (never the test split).

:func:`tune` draws a seeded share of the *training* entries as validation positives
(:func:`validation_split`), fits each candidate setting on the rest, scores it with the project's one
evaluator (:func:`mmrec_fast.evaluation.evaluate_model`, full-catalogue ranking) and keeps the best.
The search is a seeded random walk over a small grid: the kind's defaults first (so a search never
returns something worse than the defaults on validation), then distinct grid points in a random
order, until the budget (trials and/or seconds) is spent. Iterative models (BPR, the hybrid) also
early-stop on the same validation entries and the chosen epoch count becomes part of the setting.

The function takes no test data at all; ``tests/test_tuning.py`` also checks with a spy on the
evaluator that every matrix scored during a search lies inside the training entries.
"""

from __future__ import annotations

import itertools
import math
import numbers
import time
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from ..evaluation import evaluate_model
from .training import DEFAULT_PARAMS, MODEL_KINDS, SEARCH_SPACES, defaults_for, fit_kind, validation_split

__all__ = ["Budget", "Trial", "tune", "validation_split", "search_points"]


@dataclass(frozen=True)
class Budget:
    """How much searching :func:`tune` may do; it stops at whichever limit comes first.

    Parameters
    ----------
    trials : int or None
        Most settings fitted (None: no limit but the grid's size).
    seconds : float or None
        Wall-clock limit; a trial that has started is finished, so the search may overrun by one
        trial. At least one trial (the defaults) always runs.
    """

    trials: int | None = 12
    seconds: float | None = None

    def __post_init__(self):
        if self.trials is not None and (
            isinstance(self.trials, bool) or not isinstance(self.trials, numbers.Integral) or self.trials < 1
        ):
            raise ValueError(f"budget.trials must be a positive integer or None, got {self.trials!r}")
        if self.seconds is not None and (
            isinstance(self.seconds, bool) or not isinstance(self.seconds, numbers.Real) or not self.seconds > 0
        ):
            raise ValueError(f"budget.seconds must be a positive number or None, got {self.seconds!r}")

    @classmethod
    def coerce(cls, budget) -> Budget:
        """A Budget from a Budget, an int (trials), a dict of fields, or None (the default)."""
        if budget is None:
            return cls()
        if isinstance(budget, Budget):
            return budget
        if isinstance(budget, numbers.Integral) and not isinstance(budget, bool):
            return cls(trials=int(budget))
        if isinstance(budget, dict):
            unknown = sorted(set(budget) - {"trials", "seconds"})
            if unknown:
                raise ValueError(f"budget: unknown key(s) {unknown}; known: trials, seconds")
            return cls(**budget)
        raise TypeError(f"budget must be a Budget, an int (trials), a dict or None, got {type(budget).__name__}")


@dataclass
class Trial:
    """One fitted setting: its parameters, its validation score and what it cost.

    ``params`` is what was asked; ``chosen`` is what a refit should use (``params`` plus, for an
    early-stopped model, the best epoch count found on validation).
    """

    params: dict
    chosen: dict
    score: float
    metrics: dict
    seconds: float
    index: int = 0
    error: str | None = None

    def to_dict(self) -> dict:
        """Plain-JSON form (saved with the model's metadata)."""
        return asdict(self)


def search_points(space: dict, defaults: dict, n: int | None, seed: int) -> list[dict]:
    """The settings a search tries, in order: ``defaults`` first, then distinct grid points, seeded.

    Parameters
    ----------
    space : dict
        Parameter name -> sequence of candidate values (a grid).
    defaults : dict
        The starting setting (its values need not be on the grid).
    n : int or None
        How many settings at most.
    seed : int
        Seeds the order of the grid points.
    """
    if not isinstance(space, dict):
        raise TypeError(f"space must be a dict of parameter -> candidate values, got {type(space).__name__}")
    names = sorted(space)
    for name in names:
        values = space[name]
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) == 0:
            raise ValueError(f"space[{name!r}] must be a non-empty sequence of values, got {values!r}")
    first = dict(defaults)
    points = [first]
    size = math.prod(len(space[name]) for name in names) if names else 0
    limit = size + 1 if n is None else n
    if size == 0 or limit <= 1:
        return points[: max(limit, 1)]
    rng = np.random.default_rng(seed)
    seen = {tuple(sorted((k, repr(v)) for k, v in first.items()))}
    if size <= 4096:
        # Small grid: a seeded permutation of all of it (without replacement, no retries).
        order = rng.permutation(size)
        grid = list(itertools.product(*(space[name] for name in names)))
        candidates = (grid[i] for i in order)
    else:
        candidates = (tuple(space[name][rng.integers(len(space[name]))] for name in names) for _ in range(50 * limit))
    for values in candidates:
        point = {**defaults, **dict(zip(names, values))}
        key = tuple(sorted((k, repr(v)) for k, v in point.items()))
        if key in seen:
            continue
        seen.add(key)
        points.append(point)
        if len(points) >= limit:
            break
    return points


def _plain(value):
    """NumPy scalars -> Python scalars so trials are JSON-able."""
    return value.item() if isinstance(value, np.generic) else value


def tune(
    kind: str,
    train: sp.spmatrix,
    space: dict | None = None,
    *,
    budget=None,
    seed: int = 0,
    features=None,
    feature_blocks=None,
    defaults: dict | None = None,
    val_fraction: float = 0.1,
    relevance: float | None = None,
    metric: str = "ndcg@10",
    log=None,
) -> tuple[dict, list[Trial]]:
    """Search settings of ``kind`` on a validation split carved from ``train`` only.

    Parameters
    ----------
    kind : str
        One of :data:`mmrec_fast.pipeline.MODEL_KINDS`.
    train : scipy sparse (n_users, n_items)
        Training interactions (every stored entry a positive; values are ratings when ``relevance``
        is given). Nothing else is read.
    space : dict, optional
        Parameter -> candidate values; default :data:`mmrec_fast.pipeline.SEARCH_SPACES` ``[kind]``.
    budget : Budget, int or dict, optional
        Trials and/or seconds (default ``Budget()``: 12 trials, no time limit).
    seed : int
        Seeds the validation draw, the search order and every fit.
    features, feature_blocks
        Item content for content-aware kinds (as for :func:`train_model`).
    defaults : dict, optional
        The first setting tried (default :func:`~mmrec_fast.pipeline.training.defaults_for`: the kind's
        defaults for rating-valued or implicit ``train``).
    val_fraction : float
        Share of the training entries held out for validation.
    relevance : float, optional
        Held-out entries valued at least this are the validation positives (the others stay
        candidates, as test rows rated below the threshold do); None: every held-out entry.
    metric : str
        Key of :func:`~mmrec_fast.evaluation.evaluate_model`'s result to maximise.
    log : callable, optional
        Called with one line per trial (e.g. ``print``).

    Returns
    -------
    best_params : dict
        The best trial's ``chosen`` setting (refit it on all of ``train``, as :func:`train_model` does).
    trials : list of Trial
        Every trial in the order run.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")
    if not sp.issparse(train):
        raise TypeError(f"train must be a scipy sparse users x items matrix, got {type(train).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    budget = Budget.coerce(budget)
    space = SEARCH_SPACES.get(kind, {}) if space is None else space
    base = defaults_for(kind, train) if defaults is None else dict(defaults)
    unknown = sorted(set(space) - set(DEFAULT_PARAMS.get(kind, {})) - set(base))
    if unknown:
        raise ValueError(
            f"space: unknown parameter(s) {unknown} for kind {kind!r}; known: {sorted(DEFAULT_PARAMS.get(kind, {}))}"
        )
    n_users, n_items = train.shape
    fit_part, val, val_exclude = validation_split(train, val_fraction, seed, relevance=relevance)
    points = search_points(space, base, budget.trials, seed)
    started = time.perf_counter()
    trials: list[Trial] = []
    for index, params in enumerate(points):
        if trials and budget.seconds is not None and time.perf_counter() - started >= budget.seconds:
            break
        params = {k: _plain(v) for k, v in params.items()}
        t0 = time.perf_counter()
        try:
            model, chosen = fit_kind(
                kind,
                n_users,
                n_items,
                fit_part,
                params,
                features=features,
                feature_blocks=feature_blocks,
                seed=seed,
                validation=val,
            )
            metrics = evaluate_model(
                model, val, exclude=val_exclude, ks=(10,), metrics=("ndcg", "precision", "recall", "map", "auc")
            )
        except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
            # A setting the model rejects (or that diverges) is a failed trial, not a failed search;
            # the defaults, tried first, must succeed.
            if index == 0:
                raise
            trials.append(Trial(params, params, float("-inf"), {}, time.perf_counter() - t0, index, repr(exc)))
            continue
        if metric not in metrics:
            raise ValueError(f"metric {metric!r} is not one of {sorted(k for k in metrics if k != 'n_users')}")
        trial = Trial(
            params,
            {k: _plain(v) for k, v in chosen.items()},
            float(metrics[metric]),
            {k: float(v) for k, v in metrics.items()},
            time.perf_counter() - t0,
            index,
        )
        trials.append(trial)
        if log is not None:
            log(f"tune {kind} trial {index}: {trial.chosen} -> val {metric} {trial.score:.4f} ({trial.seconds:.1f} s)")
    best = max(trials, key=lambda t: (t.score, -t.index))
    return dict(best.chosen), trials
