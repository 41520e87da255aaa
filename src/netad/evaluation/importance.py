"""Global importance of each input column on labelled evaluation rows, two ways.

- **Mean |attribution|**: the mean size of each column's contribution to the classifier's logit over the rows
  (:class:`~netad.inference.explain.Explainer`, the per-record explanations of ``predict.py --explain``).
- **Permutation importance**: how far the model's ROC AUC on the rows falls when one column's values are
  shuffled among them (scikit-learn's ``permutation_importance``, the model's whole score, hybrid parts
  included), mean and std over ``repeats`` shuffles. A column the model needs falls far; one it ignores stays
  near 0 (negative: the shuffle happened to help).

Both read only the evaluation rows they are given; neither chooses anything.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pandas as pd

from netad import metrics as M

MAX_ROWS = 20_000  # rows drawn (seeded) from larger evaluation sets: the ranking is stable long before


def _sample(features: pd.DataFrame, labels: np.ndarray, max_rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    if len(labels) <= max_rows:
        return features, labels
    keep = np.sort(np.random.default_rng(seed).choice(len(labels), max_rows, replace=False))
    return features.iloc[keep], labels[keep]


def global_importance(predictor: Any, features: pd.DataFrame, labels: np.ndarray, *, repeats: int = 3,
                      seed: int = 0, max_rows: int = MAX_ROWS) -> Optional[dict[str, Any]]:
    """Per model column (most important first by mean |attribution|): ``mean_abs_attribution``,
    ``permutation_auroc_drop`` and its ``permutation_std``; None for a model without an explanation baseline."""
    from sklearn.inspection import permutation_importance

    from netad.inference.explain import Explainer, explanation_info

    if explanation_info(predictor) is None:
        return None
    labels = np.asarray(labels)
    features, labels = _sample(features[predictor.columns], labels, max_rows, seed)
    explainer = Explainer(predictor)
    e = explainer.explain_encoded(predictor.preprocessor.encode(features))
    mean_abs = np.abs(e.classifier).mean(axis=0)
    columns = e.columns
    if len(np.unique(labels)) < 2:
        drops = stds = np.full(len(columns), np.nan)
    else:
        def auroc(_estimator: Any, x: pd.DataFrame, y: np.ndarray) -> float:
            return M.compute_metrics(predictor.score(x), y, predictor.threshold)["auroc"]

        # the model's columns only: shuffling a column it never reads (constant in training) tells nothing
        used = [predictor.columns.index(c) for c in columns]
        result = permutation_importance(_Scored(), features, labels, scoring=auroc, n_repeats=repeats,
                                        random_state=seed, n_jobs=1)
        drops, stds = result.importances_mean[used], result.importances_std[used]
    order = np.argsort(-mean_abs, kind="stable")
    return {"method": explainer.method, "rows": int(len(labels)), "repeats": repeats,
            "columns": [{"column": columns[i], "mean_abs_attribution": float(mean_abs[i]),
                         "permutation_auroc_drop": float(drops[i]), "permutation_std": float(stds[i])}
                        for i in order]}


class _Scored:
    """What ``permutation_importance`` calls the estimator: the scoring callable holds the model itself."""

    def fit(self, *_args: Any) -> "_Scored":  # never called: permutation importance only scores
        return self


def importance_over_folds(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """Fold models' importances side by side: each column's mean and std over the folds (ordered by the mean
    |attribution|), and each fold's own values."""
    names = sorted({c["column"] for f in per_fold for c in f["columns"]})
    table = {name: {f"fold_{i}": next((c for c in f["columns"] if c["column"] == name), None)
                    for i, f in enumerate(per_fold)} for name in names}
    rows = []
    for name, folds in table.items():
        attr = [c["mean_abs_attribution"] for c in folds.values() if c is not None]
        drop = [c["permutation_auroc_drop"] for c in folds.values() if c is not None]
        rows.append({"column": name, "mean_abs_attribution": float(np.mean(attr)),
                     "mean_abs_attribution_std": float(np.std(attr, ddof=1)) if len(attr) > 1 else 0.0,
                     "permutation_auroc_drop": float(np.nanmean(drop)) if not np.isnan(drop).all() else float("nan"),
                     "permutation_std": float(np.nanstd(drop, ddof=1)) if np.isfinite(drop).sum() > 1 else 0.0,
                     "folds": {k: (None if c is None else c["mean_abs_attribution"]) for k, c in folds.items()}})
    rows.sort(key=lambda r: -r["mean_abs_attribution"])
    return {"method": per_fold[0]["method"], "rows": sum(f["rows"] for f in per_fold),
            "repeats": per_fold[0]["repeats"], "columns": rows, "n_folds": len(per_fold)}
