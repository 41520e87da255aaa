"""Figures for test.py and assess_model.py.

Every function takes plain arrays (scores are anomaly probabilities, labels 0/1), computes its
curves through :mod:`netad.metrics` and returns a matplotlib ``Figure`` built without
pyplot, so no GUI backend or global figure state is involved. ``save_png`` writes one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from netad.io import atomic_target
from netad import metrics as M

from netad.evaluation.colors import ANOMALY_COLOR, NORMAL_COLOR, THRESHOLD_COLOR  # noqa: F401 - used here and re-exported
CLASS_NAMES = ("normal", "anomaly")


def _figure(width: float = 6.4, height: float = 4.4) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    return fig, fig.add_subplot()


def _score_range(scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """The x-range that shows the scores and the threshold: models on weak data squeeze every
    score into a narrow band, which a fixed 0..1 axis would draw as a single bar."""
    lo = min(float(np.min(scores)) if len(scores) else 0.0, threshold)
    hi = max(float(np.max(scores)) if len(scores) else 1.0, threshold)
    pad = max((hi - lo) * 0.05, 1e-3)
    return max(lo - pad, 0.0), min(hi + pad, 1.0)


def save_png(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    with atomic_target(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def class_balance(parts: dict[str, np.ndarray]) -> Figure:
    """Row counts of each class in each part (train / validation / test ...)."""
    fig, ax = _figure()
    names = list(parts)
    x = np.arange(len(names))
    width = 0.38
    for offset, cls, color in ((-width / 2, 0, NORMAL_COLOR), (width / 2, 1, ANOMALY_COLOR)):
        counts = [int(np.sum(np.asarray(parts[n]) == cls)) for n in names]
        bars = ax.bar(x + offset, counts, width, label=CLASS_NAMES[cls], color=color)
        totals = [max(len(parts[n]), 1) for n in names]
        ax.bar_label(bars, labels=[f"{c}\n({c / t:.0%})" for c, t in zip(counts, totals)], fontsize=8)
    ax.set_xticks(x, [n.replace(" (", "\n(") for n in names])
    ax.set_ylabel("rows")
    ax.set_title("Class balance")
    ax.margins(y=0.2)
    ax.legend()
    return fig


def score_distribution(scores: np.ndarray, labels: np.ndarray, threshold: float, title: str = "") -> Figure:
    """Histogram of scores per true class, with the decision threshold."""
    fig, ax = _figure()
    lo, hi = _score_range(scores, threshold)
    bins = np.linspace(lo, hi, 41)
    for cls, color in ((0, NORMAL_COLOR), (1, ANOMALY_COLOR)):
        s = scores[labels == cls]
        if s.size:
            ax.hist(s, bins=bins, alpha=0.55, color=color, density=True, label=f"true {CLASS_NAMES[cls]} ({s.size})")
    ax.axvline(threshold, color=THRESHOLD_COLOR, linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("anomaly score (probability)" + ("" if (lo, hi) == (0.0, 1.0) else ", zoomed to the scores"))
    ax.set_xlim(lo, hi)
    ax.set_ylabel("density")
    ax.set_title(title or "Score distribution by true class")
    ax.legend()
    return fig


def roc_curves(curves: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> Figure:
    """ROC curve of each (name, scores, labels), with its AUC; the diagonal is chance."""
    fig, ax = _figure(5.6, 5.0)
    for name, scores, labels in curves:
        if len(np.unique(labels)) < 2:
            continue
        fpr, tpr = M.roc_points(scores, labels)
        auc = M.compute_metrics(scores, labels, 0.5)["auroc"]
        ax.plot(fpr, tpr, lw=1.6 if len(curves) == 1 else 1.1, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance (AUC 0.5)")
    _unit_square(ax, "false-positive rate", "true-positive rate (recall)", "ROC curve", "lower right")
    return fig


def pr_curves(curves: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> Figure:
    """Precision-recall curve of each (name, scores, labels); the dotted line is a random ranking."""
    fig, ax = _figure(5.6, 5.0)
    prevalence = []
    for name, scores, labels in curves:
        if len(np.unique(labels)) < 2:
            continue
        recall, precision = M.pr_points(scores, labels)
        ap = M.compute_metrics(scores, labels, 0.5)["auprc"]
        ax.step(recall, precision, where="post", lw=1.6 if len(curves) == 1 else 1.1, label=f"{name} (AP {ap:.3f})")
        prevalence.append(float(np.mean(labels)))
    if prevalence:
        base = float(np.mean(prevalence))
        ax.axhline(base, color="grey", linestyle=":", label=f"random ranking ({base:.3f})")
    _unit_square(ax, "recall", "precision", "Precision-recall curve", "lower left")
    return fig


def _unit_square(ax: Any, xlabel: str, ylabel: str, title: str, legend_loc: str) -> None:
    """Labels, title and legend of a curve drawn on [0, 1] x [0, 1]."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc=legend_loc, fontsize=8)


def threshold_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> Figure:
    """Precision, recall and F1 against the threshold, the stored one marked."""
    fig, ax = _figure()
    sweep = M.threshold_sweep(scores, labels)
    for key, color in (("precision", "#55A868"), ("recall", ANOMALY_COLOR), ("f1", "#8172B2")):
        ax.plot(sweep["threshold"], sweep[key], label=key, color=color)
    ax.axvline(threshold, color=THRESHOLD_COLOR, linestyle="--", label=f"stored threshold {threshold:.3f}")
    lo, hi = _score_range(np.asarray(scores), threshold)
    ax.set_xlabel("threshold (flag when score >= threshold)" + ("" if (lo, hi) == (0.0, 1.0) else ", zoomed"))
    ax.set_ylabel("value")
    ax.set_xlim(lo, hi)
    ax.set_ylim(0, 1.01)
    ax.set_title("Precision, recall and F1 against the threshold")
    ax.legend(fontsize=8)
    return fig


def calibration(scores: np.ndarray, labels: np.ndarray, n_bins: int = 10,
                before: np.ndarray | None = None) -> Figure:
    """Reliability curve: the observed anomaly rate per score bin against the mean score, with the expected
    calibration error; ``before``: a calibrated model's scores before its calibration, drawn beside."""
    fig = Figure(figsize=(5.6, 5.6), dpi=110, layout="constrained")
    ax, hist = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    rel = M.reliability(scores, labels, n_bins)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    if before is not None:
        raw = M.reliability(before, labels, n_bins)
        ax.plot(raw["predicted"], raw["observed"], marker="s", color=NORMAL_COLOR, alpha=0.8,
                label=f"before calibration (ECE {M.expected_calibration_error(before, labels, n_bins):.3f})")
    ece = M.expected_calibration_error(scores, labels, n_bins)
    ax.plot(rel["predicted"], rel["observed"], marker="o", color=ANOMALY_COLOR,
            label=f"{'calibrated' if before is not None else 'model'} (ECE {ece:.3f})")
    ax.set_ylabel("observed anomaly rate")
    ax.set_ylim(0, 1.01)
    ax.set_title("Calibration (reliability) curve")
    ax.legend(fontsize=8)
    edges = np.linspace(0, 1, n_bins + 1)
    hist.bar(edges[:-1], rel["bin_counts"], width=1.0 / n_bins, align="edge", color="#999999", edgecolor="white")
    hist.set_xlabel("predicted anomaly probability")
    hist.set_ylabel("rows")
    hist.set_xlim(0, 1)
    return fig


def fold_metrics(rows: Sequence[dict[str, float]], keys: Sequence[str], summary: dict[str, dict[str, float]]) -> Figure:
    """Per-fold bars for each metric, with the mean and ± one standard deviation."""
    fig, ax = _figure(max(6.4, 1.1 * len(keys) + 2), 4.4)
    n = len(rows)
    x = np.arange(len(keys))
    width = 0.8 / max(n, 1)
    for i, row in enumerate(rows):
        ax.bar(x - 0.4 + width * (i + 0.5), [row[k] for k in keys], width, label=f"fold {row.get('fold', i)}",
               alpha=0.8)
    means = [summary[k]["mean"] for k in keys]
    stds = [0.0 if math.isnan(summary[k]["std"]) else summary[k]["std"] for k in keys]
    ax.errorbar(x, means, yerr=stds, fmt="D", color="black", capsize=6, label="mean ± std")
    for xi, m, s in zip(x, means, stds):
        ax.annotate(f"{m:.3f}±{s:.3f}", (xi, min(m + s, 1.0)), textcoords="offset points", xytext=(0, 6),
                    ha="center", fontsize=7)
    ax.set_xticks(x, keys)
    ax.set_ylim(0, 1.12)
    ax.set_title("Metrics per fold (held-out rows of each fold)")
    ax.legend(fontsize=7, ncols=min(n + 1, 6), loc="upper center", bbox_to_anchor=(0.5, -0.08))
    return fig


def type_recall(found: dict[str, Any], limit: int = 30) -> Figure:
    """Recall per attack type (the ``limit`` largest), types the model saw in training apart from new ones."""
    types = found["types"][:limit]
    fig, ax = _figure(7.2, max(2.6, 0.28 * len(types) + 1.2))
    seen = [e.get("seen") for e in types]
    colors = [NORMAL_COLOR if s is True else ANOMALY_COLOR if s is False else "#999999" for s in seen]
    y = np.arange(len(types))[::-1]
    bars = ax.barh(y, [e["recall"] for e in types], color=colors)
    ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.set_yticks(y, [f"{e['type']} ({e['rows']})" for e in types], fontsize=8)
    for tick, color in zip(ax.get_yticklabels(), colors):  # a recall of 0 has no bar: its name keeps the colour
        tick.set_color(color)
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("recall (share of the type's rows flagged)")
    title = "Recall per attack type"
    if "seen_recall" in found:
        title += (f": seen in training {found['seen_recall']:.2f} ({found['seen_rows']} rows), "
                  f"never seen {found['unseen_recall']:.2f} ({found['unseen_rows']} rows)")
        handles = [Patch(color=NORMAL_COLOR, label="seen in training"), Patch(color=ANOMALY_COLOR, label="never seen")]
        ax.legend(handles=handles, loc="lower right", fontsize=8)
    ax.set_title(title.replace("nan", "-"), fontsize=9)
    return fig


def confusion_matrix(counts: dict[str, int], title: str = "Confusion matrix") -> Figure:
    fig, ax = _figure(4.6, 4.2)
    _draw_confusion(ax, counts, title)
    return fig


def true_vs_predicted(parts: dict[str, dict[str, int]]) -> Figure:
    """A confusion matrix (true class against predicted class) for each part."""
    fig = Figure(figsize=(4.0 * len(parts), 4.0), dpi=110, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(parts)))
    for ax, (name, counts) in zip(axes, parts.items()):
        _draw_confusion(ax, counts, name)
    fig.suptitle("True against predicted class (counts, share of each true class)")
    return fig


def _draw_confusion(ax: Any, counts: dict[str, int], title: str) -> None:
    grid = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]], dtype=np.float64)
    row_share = grid / np.maximum(grid.sum(axis=1, keepdims=True), 1)
    ax.imshow(row_share, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{int(grid[i, j])}\n{row_share[i, j]:.0%}", ha="center", va="center",
                    color="white" if row_share[i, j] > 0.6 else "black")
    ax.set_xticks([0, 1], [f"pred {c}" for c in CLASS_NAMES])
    ax.set_yticks([0, 1], [f"true {c}" for c in CLASS_NAMES])
    ax.set_title(title)


def leaderboard(entries: Sequence[dict[str, Any]], with_test: bool = False) -> Figure:
    """ROC AUC, PR AUC and F1 per detector (mean ± std over folds), best first; chance marked."""
    keys = [("auroc", "ROC AUC"), ("auprc", "PR AUC"), ("f1", "F1")]
    if with_test:
        keys += [("test_auroc", "test ROC AUC"), ("test_accuracy", "test accuracy")]
    names = [e["detector"] for e in entries]
    fig, ax = _figure(7.2, max(3.0, 0.16 * len(names) * len(keys) + 1.8))
    y = np.arange(len(names))[::-1]
    height = 0.8 / len(keys)
    for i, (key, label) in enumerate(keys):
        means = [e[f"{key}_mean"] for e in entries]
        stds = [0.0 if math.isnan(e[f"{key}_std"]) else e[f"{key}_std"] for e in entries]
        ax.barh(y + 0.4 - height * (i + 0.5), means, height, xerr=stds, capsize=2, label=label)
    ax.axvline(0.5, color="grey", linestyle=":", label="ROC AUC of chance")
    ax.set_yticks(y, names)
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("mean over folds (error bar: std)")
    ax.set_title("Detectors on the same folds (thresholds chosen on validation rows)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncols=3)
    return fig


def importance(found: dict[str, Any], limit: int = 20) -> Figure:
    """Global importance of the ``limit`` top columns: mean |attribution| beside the permutation drop in ROC AUC
    (error bars: std over the fold models, or over the shuffles)."""
    rows = found["columns"][:limit]
    fig = Figure(figsize=(8.4, max(2.6, 0.3 * len(rows) + 1.4)), dpi=110, layout="constrained")
    left, right = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(rows))[::-1]
    attr_err = [r.get("mean_abs_attribution_std", 0.0) for r in rows]
    left.barh(y, [r["mean_abs_attribution"] for r in rows], xerr=attr_err if any(attr_err) else None,
              color=NORMAL_COLOR)
    left.set_yticks(y, [r["column"] for r in rows], fontsize=8)
    left.set_xlabel("mean |contribution to the logit|")
    left.set_title(f"Attribution ({found['method']})", fontsize=9)
    drops = [r["permutation_auroc_drop"] for r in rows]
    right.barh(y, np.nan_to_num(drops), xerr=[r["permutation_std"] for r in rows], color=ANOMALY_COLOR)
    right.axvline(0, color=THRESHOLD_COLOR, linewidth=0.8)
    right.set_xlabel("ROC AUC lost when the column is shuffled")
    right.set_title(f"Permutation ({found['repeats']} shuffles)", fontsize=9)
    folds = f", {found['n_folds']} fold models" if found.get("n_folds") else ""
    fig.suptitle(f"Global importance on {found['rows']:,} evaluation rows{folds}", fontsize=10)
    return fig

