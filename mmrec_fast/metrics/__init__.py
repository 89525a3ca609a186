"""Ranking metrics from top-k id lists against held-out CSR positives (Cornac 3.0.1 conventions).

See :mod:`mmrec_fast.metrics.ranking` for the definitions.
"""

from .protocol import cornac_protocol
from .ranking import ALL_METRICS, AT_K_METRICS, FULL_METRICS, candidate_counts, evaluate, evaluate_per_user

__all__ = [
    "evaluate",
    "evaluate_per_user",
    "candidate_counts",
    "cornac_protocol",
    "AT_K_METRICS",
    "FULL_METRICS",
    "ALL_METRICS",
]
