"""The one metrics package (the bottom layer: numpy, torch, torchmetrics, scikit-learn and scipy only):
training, the CV summary, test, assess and compare all compute their numbers here."""

from netad.config import METRIC_NAMES, MONITORABLE
from netad.metrics.scores import (
    CI_METRICS,
    TABLE_METRICS,
    binary_metrics,
    bootstrap_ci,
    compute_metrics,
    confusion_counts,
    expected_calibration_error,
    false_positive_rate,
    held_out_metrics,
    pr_points,
    recall_at_fpr,
    reliability,
    roc_points,
    summarize,
    threshold_sweep,
    to_unit_interval,
)
from netad.metrics.significance import CHANCE_P, auroc_vs_chance, format_p, majority_accuracy
from netad.metrics.thresholds import HIGH_FPR, choose_threshold, just_above, operating_point
from netad.metrics.types import NO_FAMILY, format_type_table, seen_rows, type_recall

__all__ = [
    "CHANCE_P", "CI_METRICS", "HIGH_FPR", "METRIC_NAMES", "MONITORABLE", "NO_FAMILY", "TABLE_METRICS",
    "auroc_vs_chance", "format_type_table", "seen_rows", "type_recall",
    "binary_metrics", "bootstrap_ci", "choose_threshold", "compute_metrics", "confusion_counts",
    "expected_calibration_error", "false_positive_rate", "format_p", "held_out_metrics", "just_above", "majority_accuracy", "operating_point",
    "pr_points", "recall_at_fpr", "reliability", "roc_points", "summarize", "threshold_sweep", "to_unit_interval",
]
