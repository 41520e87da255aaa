"""Does a model beat chance? The Mann-Whitney test of ROC AUC and the majority-class floor."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu


#: ROC AUC counts as better than chance when the one-sided Mann-Whitney p-value is below this
CHANCE_P = 0.01


def format_p(p: float) -> str:
    """A p-value as people read it: ``p < 0.001`` below that, otherwise three significant digits."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3g}"


def majority_accuracy(target: Any) -> float:
    """Accuracy of always answering the most common class of these rows: the floor any model must beat."""
    target = np.asarray(target, dtype=np.int64)
    if target.size == 0:
        return math.nan
    return float(max(target.mean(), 1.0 - target.mean()))


def auroc_vs_chance(scores: Any, target: Any) -> dict[str, float]:
    """Is this ROC AUC better than chance?

    ROC AUC is the Mann-Whitney U statistic divided by n_pos * n_neg, so the label-permutation
    test of ROC AUC is the Mann-Whitney U test (scipy: exact for small samples without ties,
    otherwise the tie-corrected normal approximation). Returns the observed AUROC, the
    chance level (mean 0.5 and the std of AUROC under shuffled labels) and the one-sided p-value.
    """
    scores = np.asarray(scores, dtype=np.float64)
    target = np.asarray(target, dtype=np.int64)
    pos, neg = scores[target == 1], scores[target == 0]
    n_pos, n_neg = len(pos), len(neg)
    if n_pos == 0 or n_neg == 0:
        return {"observed": math.nan, "mean": 0.5, "std": math.nan, "p_value": math.nan}
    test = mannwhitneyu(pos, neg, alternative="greater", method="auto")
    null_std = math.sqrt((n_pos + n_neg + 1) / (12.0 * n_pos * n_neg))
    return {"observed": float(test.statistic) / (n_pos * n_neg), "mean": 0.5, "std": null_std,
            "p_value": float(test.pvalue)}
