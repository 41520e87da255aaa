"""A compact summary of the training rows, kept with the model for drift checks (``netad drift``).

No raw rows: per numeric column its decile edges (the interior ones), the training rows' share in each bin, and
its CDF at the 1st to 99th percentiles (for a Kolmogorov-Smirnov test against the summary); per boolean and text
column the count of each value (text: the preprocessing's categories, the rest as one ``other`` bucket, gaps
apart). Extremes (minimum, maximum) are not kept. The same numeric summary describes the model's scores on the
validation rows (and on their normal rows alone), and the validation rows' flagged count.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from netad.data.preprocessing import parse_boolean

SUMMARY_FORMAT = 1
N_BINS = 10
KS_PERCENTILES = np.arange(1, 100)
OTHER, GAP = "(other)", "(gap)"


SCORE_EDGES = np.linspace(0, 1, N_BINS + 1)[1:-1]  # scores: fixed bins of width 0.1 and CDF points every 0.01,
SCORE_POINTS = KS_PERCENTILES / 100.0              # so orders of magnitude among near-0 scores do not count


def numeric_summary(values: Any, edges: Optional[np.ndarray] = None,
                    points: Optional[np.ndarray] = None) -> dict[str, Any]:
    """Decile bins and CDF points at the percentiles of the finite values (gaps and infinities counted apart);
    ``edges`` and ``points`` fixed instead (scores: :data:`SCORE_EDGES`, :data:`SCORE_POINTS`)."""
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    if not len(finite):
        return {"kind": "numeric", "rows": int(len(x)), "missing": int(len(x)), "edges": [], "bins": [0],
                "ks_points": [], "ks_cdf": []}
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, N_BINS + 1)[1:-1])) if edges is None else edges
    bins = np.bincount(np.searchsorted(edges, finite, side="right"), minlength=len(edges) + 1)
    points = np.unique(np.percentile(finite, KS_PERCENTILES)) if points is None else points
    cdf = np.searchsorted(np.sort(finite), points, side="right") / len(finite)
    return {"kind": "numeric", "rows": int(len(x)), "missing": int(len(x) - len(finite)),
            "edges": edges.tolist(), "bins": bins.tolist(), "ks_points": points.tolist(), "ks_cdf": cdf.tolist()}


def counts_of(values: Sequence[Any], index: np.ndarray, known: Optional[list[str]] = None) -> dict[str, int]:
    """Counts of each value as text, from the distinct ``values`` (None: a gap) and each row's ``index`` into them;
    with ``known``, those in that order and the rest in one ``(other)`` bucket; gaps as ``(gap)``. Training
    (:func:`value_counts`) and ``netad drift`` (distinct values from pyarrow) both count through it."""
    out: dict[str, int] = {k: 0 for k in known} if known is not None else {}
    other = gaps = 0
    for value, n in zip(values, np.bincount(index, minlength=len(values)).tolist()):
        key = str(value) if value is not None else None
        if key is None:
            gaps += n
        elif known is None or key in out:
            out[key] = out.get(key, 0) + n
        else:
            other += n
    if known is not None:
        out[OTHER] = other
    if gaps:
        out[GAP] = gaps
    return out


def value_counts(values: pd.Series, known: Optional[list[str]] = None) -> dict[str, int]:
    """:func:`counts_of` a column of a DataFrame."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return counts_of(list(uniques) + [None], np.where(codes < 0, len(uniques), codes), known)


def psi(expected: Any, actual: Any, floor: float = 1e-4) -> float:
    """Population stability index of two count vectors over the same bins; a bin's share is at least ``floor``
    (an empty bin would make it infinite)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64) / max(1.0, float(np.sum(expected))), floor)
    a = np.maximum(np.asarray(actual, dtype=np.float64) / max(1.0, float(np.sum(actual))), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def boolean_values(values: pd.Series) -> pd.Series:
    """A boolean column as the preprocessing reads it (:func:`parse_boolean`): True, False, or a gap."""
    return values.map(parse_boolean).astype(object)


def summarize_training_rows(frame: pd.DataFrame, state: dict[str, Any]) -> dict[str, Any]:
    """The summary of raw training rows (``frame``: the model's input columns) under the fitted preprocessing
    ``state``: every column the model reads."""
    columns: dict[str, Any] = {}
    for col in state["numeric"]["columns"]:
        columns[col] = numeric_summary(pd.to_numeric(frame[col], errors="coerce"))
    for col in state["boolean"]["columns"]:
        columns[col] = {"kind": "boolean", "counts": value_counts(boolean_values(frame[col]))}
    for col, cats in zip(state["categorical"]["columns"], state["categorical"]["categories"]):
        columns[col] = {"kind": "categorical", "counts": value_counts(frame[col], list(cats))}
    return {"format": SUMMARY_FORMAT, "rows": int(len(frame)), "columns": columns}


def summary_problem(summary: Any) -> Optional[str]:
    """What makes a stored summary unusable (one line), or None."""
    if not isinstance(summary, dict) or summary.get("format") != SUMMARY_FORMAT:
        return "the training-data summary is from an unknown version"
    columns = summary.get("columns")
    if not isinstance(columns, dict) or not isinstance(summary.get("score"), dict):
        return "the training-data summary has no columns or no score summary"
    for name, col in list(columns.items()) + [("score", summary["score"])]:
        if not isinstance(col, dict) or col.get("kind") not in ("numeric", "boolean", "categorical"):
            return f"the training-data summary of '{name}' is unusable"
        if col["kind"] == "numeric" and (len(col.get("bins", [])) != len(col.get("edges", [])) + 1
                                         or len(col.get("ks_points", [])) != len(col.get("ks_cdf", []))):
            return f"the training-data summary of '{name}' is unusable"
        if col["kind"] != "numeric" and not isinstance(col.get("counts"), dict):
            return f"the training-data summary of '{name}' is unusable"
    return None
