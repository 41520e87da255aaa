"""The decision threshold: chosen on validation scores, and what it means for normal traffic."""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
from sklearn.metrics import roc_curve

from netad.metrics.scores import threshold_sweep


#: a false-positive rate above this flags too many normal rows to monitor mostly normal traffic with
HIGH_FPR = 0.10


def operating_point(fpr: float, at: str, flags: str = "the model flags", method: Optional[str] = None) -> str:
    """One line: the share of normal rows flagged at the threshold, and the remedy when over :data:`HIGH_FPR`
    (``method``: how the threshold was chosen, when known)."""
    if fpr is None or math.isnan(fpr):
        return f"At {at} the false-positive rate is undefined: these rows hold no normal rows"
    line = f"At {at} {flags} {100 * fpr:.1f} % of normal rows (false-positive rate)"
    if fpr > HIGH_FPR and method == "target_fpr":
        line += (f": over {100 * HIGH_FPR:g} %, although the threshold was chosen for threshold.target_fpr on "
                 f"validation rows: these rows are not like them (other traffic, drift), or the model cannot separate "
                 f"the classes there")
    elif fpr > HIGH_FPR:
        line += (f": over {100 * HIGH_FPR:g} %, too many false alarms to monitor mostly normal traffic; to cap it, "
                 f"set threshold.method: target_fpr (with threshold.target_fpr, e.g. 0.01) and retrain")
    return line


def choose_threshold(scores: Any, target: Any, method: str = "max_f1", target_fpr: float = 0.01,
                     upper: Optional[float] = 1.0) -> float:
    """Pick the decision threshold on validation scores.

    ``max_f1``: the score cut with the highest F1 (scikit-learn's PR curve).
    ``target_fpr``: the lowest cut whose false-positive rate is at most ``target_fpr``.
    Probabilities (``upper=1.0``) fall back to 0.5 when the validation rows hold a single
    class; unbounded detector scores (``upper=None``) fall back to the highest score.
    """
    scores = np.asarray(scores, dtype=np.float64)
    target = np.asarray(target, dtype=np.int64)
    if scores.size == 0 or target.min() == target.max():
        return 0.5 if upper is not None else float(np.max(scores, initial=0.0))
    if method == "max_f1":
        sweep = threshold_sweep(scores, target)
        return float(sweep["threshold"][int(np.argmax(sweep["f1"]))])
    if method == "target_fpr":
        fpr, _, thresholds = roc_curve(target, scores, drop_intermediate=False)
        ok = np.nonzero(fpr <= target_fpr)[0]
        cut = thresholds[ok[-1]]
        if np.isfinite(cut):
            return float(min(cut, upper)) if upper is not None else float(cut)
        # roc_curve's first threshold is +inf: even the top score flags too many normal rows, so
        # flag nothing; just above the highest score (a cut of 1.0 would still flag saturated 1.0s)
        return just_above(scores.max())
    raise ValueError(f"unknown threshold method {method!r}")


def just_above(value: float) -> float:
    """The smallest cut above ``value`` that float32 scores also see as above it (numpy compares a
    float32 array with a Python float in float32, where a float64 step above 1.0 is 1.0 again)."""
    up = np.float32(value)
    if float(up) <= float(value):
        up = np.nextafter(up, np.float32(np.inf))
    return float(up)
