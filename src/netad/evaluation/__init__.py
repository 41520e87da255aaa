"""Metrics and thresholds: the one place they are computed."""

from netad.evaluation.metrics import (
    METRIC_NAMES,
    choose_threshold,
    compute_metrics,
    false_positive_rate,
    binary_metrics,
    auroc_vs_chance,
    summarize,
)

__all__ = [
    "METRIC_NAMES",
    "choose_threshold",
    "compute_metrics",
    "false_positive_rate",
    "binary_metrics",
    "auroc_vs_chance",
    "summarize",
]
