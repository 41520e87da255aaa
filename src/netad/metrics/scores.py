"""Metrics of scored rows: the table metrics, curves and bootstrap intervals.

Threshold-free metrics (AUROC, AUPRC) rank scores; threshold metrics use the threshold
that was chosen on validation data and travels with the model.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_average_precision,
    binary_f1_score,
    binary_stat_scores,
)

from netad.config import METRIC_NAMES

#: the metrics of every held-out table (CV folds, test.py, assess): the six plus the false-positive rate
TABLE_METRICS = list(METRIC_NAMES) + ["fpr"]
#: metrics that get a bootstrap confidence interval
CI_METRICS = ("f1", "auroc", "auprc")


def _strict_cut(threshold: float) -> float:
    """The cut ``c`` with ``score > c`` <=> ``score >= threshold`` for float32 scores.

    torchmetrics flags ``preds > threshold``; everywhere else (``choose_threshold``'s
    scikit-learn curves, ``false_positive_rate``, the prediction files) a row is flagged
    when ``score >= threshold``. Without this, the row at the chosen cut is not flagged.
    """
    up = np.float32(threshold)
    if float(up) < float(threshold):  # round towards +inf onto the float32 grid
        up = np.nextafter(up, np.float32(np.inf))
    return float(np.nextafter(up, np.float32(-np.inf)))


def binary_metrics(scores: Any, target: Any, threshold: float) -> dict[str, float]:
    """The six :data:`METRIC_NAMES` of scores in [0, 1] against 0/1 ``target``; a row is flagged at
    ``score >= threshold``. AUROC and AUPRC are NaN when ``target`` holds one class (undefined).

    torchmetrics' functional metrics, called once per epoch and stage; they give the stateful
    ``MetricCollection``'s numbers (a unit test checks) without its per-call bookkeeping.
    """
    scores_t = torch.as_tensor(scores).detach().reshape(-1).float()
    target_t = torch.as_tensor(target).detach().reshape(-1).long().to(scores_t.device)
    tp, fp, tn, fn, _ = (int(v) for v in binary_stat_scores(scores_t, target_t, threshold=_strict_cut(threshold),
                                                             validate_args=False).tolist())
    out = {
        "accuracy": (tp + tn) / (tp + fp + tn + fn) if tp + fp + tn + fn else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
        "auroc": math.nan,
        "auprc": math.nan,
    }
    if target_t.numel() and int(target_t.min()) != int(target_t.max()):
        out["auroc"] = float(binary_auroc(scores_t, target_t, validate_args=False))
        out["auprc"] = float(binary_average_precision(scores_t, target_t, validate_args=False))
    return out


def to_unit_interval(scores: Any, threshold: float) -> tuple[np.ndarray, float]:
    """Map unbounded detector scores into [0, 1] without changing any metric.

    torchmetrics reads floats outside [0, 1] as logits and applies a sigmoid, which would move
    the cut. Probabilities pass through unchanged; other scores are replaced by their rank among
    the distinct values (and the threshold): a strictly increasing map, so every ranking, every
    tie and ``score >= threshold`` stay exactly as they were.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0 or (scores.min() >= 0.0 and scores.max() <= 1.0 and 0.0 <= threshold <= 1.0):
        return scores, threshold
    levels = np.unique(np.append(scores, threshold))
    top = max(len(levels) - 1, 1)
    return np.searchsorted(levels, scores) / top, float(np.searchsorted(levels, threshold) / top)


def compute_metrics(scores: Any, target: Any, threshold: float, prefix: Optional[str] = None) -> dict[str, float]:
    """All six metrics for anomaly scores against 0/1 ``target`` (flagged at ``score >= threshold``).

    Scores are probabilities or any detector's scores (see :func:`to_unit_interval`).
    AUROC/AUPRC are NaN when ``target`` holds only one class (they are undefined).
    """
    scores, threshold = to_unit_interval(scores, threshold)
    out = binary_metrics(np.asarray(scores, dtype=np.float32), np.asarray(target, dtype=np.int64), threshold)
    if prefix:
        return {f"{prefix}/{k}": v for k, v in out.items()}
    return out


def recall_at_fpr(scores: Any, target: Any, fpr: float = 0.01) -> float:
    """The detection rate at a false-positive rate of at most ``fpr``: the highest recall of any score cut
    that flags no more than that share of normal rows (a threshold-free summary; it chooses nothing)."""
    target = np.asarray(target, dtype=np.int64)
    if target.min(initial=0) == target.max(initial=0):
        return math.nan
    fprs, tprs, _ = roc_curve(target, np.asarray(scores, dtype=np.float64), drop_intermediate=False)
    return float(tprs[fprs <= fpr].max())


def false_positive_rate(scores: Any, target: Any, threshold: float) -> float:
    scores = np.asarray(scores)
    target = np.asarray(target)
    negatives = target == 0
    if not negatives.any():
        return math.nan
    return float(np.mean(scores[negatives] >= threshold))


def held_out_metrics(scores: Any, target: Any, threshold: float) -> dict[str, float]:
    """The :data:`TABLE_METRICS` of scored held-out rows at the stored threshold."""
    out = compute_metrics(scores, target, threshold)
    out["fpr"] = false_positive_rate(scores, target, threshold)
    return out


def confusion_counts(scores: Any, target: Any, threshold: float) -> dict[str, int]:
    """tn, fp, fn, tp with a row flagged when ``score >= threshold`` (scikit-learn's confusion matrix)."""
    pred = (np.asarray(scores) >= threshold).astype(np.int64)
    tn, fp, fn, tp = confusion_matrix(np.asarray(target, dtype=np.int64), pred, labels=[0, 1]).ravel()
    return {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


def bootstrap_ci(
    scores: Any,
    target: Any,
    threshold: float,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Percentile bootstrap intervals for F1, ROC AUC and PR AUC (rows resampled with replacement).

    Each resample is scored with the same torchmetrics functions as :func:`compute_metrics`, at the
    stored threshold. Resamples holding a single class are left out of the ranking metrics (they
    are undefined there); ``n_used`` says how many counted.
    """
    scores, threshold = to_unit_interval(scores, threshold)
    scores_t = torch.as_tensor(np.asarray(scores, dtype=np.float32))
    target_t = torch.as_tensor(np.asarray(target, dtype=np.int64))
    n = target_t.numel()
    cut = _strict_cut(threshold)
    generator = torch.Generator().manual_seed(seed)
    values: dict[str, list[float]] = {name: [] for name in CI_METRICS}
    steps = range(n_resamples if n else 0)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="bootstrap", unit="resample", leave=False, disable=None)  # off when not a terminal
    for _ in steps:
        idx = torch.randint(0, n, (n,), generator=generator)
        s, t = scores_t[idx], target_t[idx]
        values["f1"].append(float(binary_f1_score(s, t, threshold=cut, zero_division=0, validate_args=False)))
        if int(t.min()) != int(t.max()):
            values["auroc"].append(float(binary_auroc(s, t, validate_args=False)))
            values["auprc"].append(float(binary_average_precision(s, t, validate_args=False)))
    alpha = (1.0 - level) / 2.0
    out = {}
    for name, vals in values.items():
        if not vals:
            out[name] = {"low": math.nan, "high": math.nan, "n_used": 0}
            continue
        low, high = np.quantile(np.asarray(vals), [alpha, 1.0 - alpha])
        out[name] = {"low": float(low), "high": float(high), "n_used": len(vals)}
    return out


def roc_points(scores: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate) of the ROC curve."""
    fpr, tpr, _ = roc_curve(np.asarray(target), np.asarray(scores, dtype=np.float64))
    return fpr, tpr


def pr_points(scores: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) of the precision-recall curve."""
    precision, recall, _ = precision_recall_curve(np.asarray(target), np.asarray(scores, dtype=np.float64))
    return recall, precision


def threshold_sweep(scores: Any, target: Any) -> dict[str, np.ndarray]:
    """Precision, recall and F1 at every distinct score cut (a row is flagged at ``score >= cut``)."""
    precision, recall, thresholds = precision_recall_curve(np.asarray(target), np.asarray(scores, dtype=np.float64))
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return {"threshold": thresholds, "precision": precision, "recall": recall, "f1": f1}


def reliability(scores: Any, target: Any, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Calibration curve (scikit-learn): observed anomaly rate against mean predicted probability per bin."""
    scores = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    observed, predicted = calibration_curve(np.asarray(target), scores, n_bins=n_bins, strategy="uniform")
    counts, _ = np.histogram(scores, bins=n_bins, range=(0.0, 1.0))
    return {"observed": observed, "predicted": predicted, "bin_counts": counts}


def expected_calibration_error(scores: Any, target: Any, n_bins: int = 10) -> float:
    """ECE: over ``n_bins`` equal-width score bins, the row-weighted mean gap between the bin's mean score and
    its observed anomaly rate (0: a score of 0.8 means 80 % anomalies). NaN for no rows."""
    scores = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    target = np.asarray(target, dtype=np.float64)
    if not len(scores):
        return math.nan
    bins = np.minimum((scores * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, scores, n_bins) - np.bincount(bins, target, n_bins))
    return float(gap.sum() / counts.sum())


def summarize(rows: list[dict[str, float]], keys: Optional[list[str]] = None) -> dict[str, dict[str, float]]:
    """Mean, std (sample, ddof=1), min and max of each metric over folds, NaNs ignored."""
    keys = keys or [k for k in rows[0] if isinstance(rows[0][k], (int, float))]
    out = {}
    for key in keys:
        values = np.array([r[key] for r in rows], dtype=np.float64)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            out[key] = {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan}
            continue
        out[key] = {
            "mean": float(finite.mean()),
            "std": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
            "min": float(finite.min()),
            "max": float(finite.max()),
        }
    return out
