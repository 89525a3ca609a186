"""End-to-end recommendation pipeline: protocol split, features, training, evaluation, lists."""

from .coldstart import (
    ColdItemSplit,
    ColdUserSplit,
    VectorOverride,
    cold_item_landing,
    cold_item_split,
    cold_item_vectors,
    cold_user_split,
    fold_in_users,
    random_ndcg,
)
from .experiment import ExperimentResult, default_hybrid_config, format_table, run_experiment
from .movielens import item_texts, item_titles, text_features
from .protocol import EvalSplit, cornac_ratio_split, make_eval_split
from .training import (
    BINARY_DEFAULTS,
    CONTENT_KINDS,
    DEFAULT_PARAMS,
    MODEL_KINDS,
    SEARCH_SPACES,
    defaults_for,
    fit_kind,
    fit_with_early_stopping,
    holdout_entries,
    train_model,
    validation_split,
)
from .tuning import Budget, Trial, tune

__all__ = [
    "run_experiment",
    "default_hybrid_config",
    "ExperimentResult",
    "format_table",
    "make_eval_split",
    "cornac_ratio_split",
    "EvalSplit",
    "item_texts",
    "item_titles",
    "text_features",
    "fit_with_early_stopping",
    "holdout_entries",
    "train_model",
    "MODEL_KINDS",
    "CONTENT_KINDS",
    "DEFAULT_PARAMS",
    "SEARCH_SPACES",
    "validation_split",
    "defaults_for",
    "BINARY_DEFAULTS",
    "fit_kind",
    "tune",
    "Budget",
    "Trial",
    "ColdItemSplit",
    "ColdUserSplit",
    "VectorOverride",
    "cold_item_split",
    "cold_user_split",
    "cold_item_vectors",
    "fold_in_users",
    "random_ndcg",
    "cold_item_landing",
]
