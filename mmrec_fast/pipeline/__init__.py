"""End-to-end recommendation pipeline: protocol split, features, training, evaluation, lists."""

from .experiment import ExperimentResult, default_hybrid_config, format_table, run_experiment
from .movielens import item_texts, item_titles, text_features
from .protocol import EvalSplit, cornac_ratio_split, make_eval_split
from .training import MODEL_KINDS, fit_with_early_stopping, holdout_entries, train_model

__all__ = ["run_experiment", "default_hybrid_config", "ExperimentResult", "format_table", "make_eval_split", "cornac_ratio_split",
           "EvalSplit", "item_texts", "item_titles", "text_features", "fit_with_early_stopping",
           "holdout_entries", "train_model", "MODEL_KINDS"]
