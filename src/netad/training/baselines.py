"""What chance looks like on the same folds, and the verdict whether the model beats it.

- majority: always answer the training rows' majority class (a constant score);
- label permutation: the same model retrained on the fold's shuffled labels (its fits are trained by cv.py);
- the verdict: the Mann-Whitney test of the out-of-fold ROC AUC, and the permutation models' mean.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from netad.config import Config
from netad.data.loading import LabelledTable
from netad.data.splits import FoldSplit
from netad.metrics import (
    CHANCE_P, TABLE_METRICS, auroc_vs_chance, format_p, held_out_metrics, operating_point, summarize,
)
from netad.training.fit import FitResult


def permutation_fit_name(fold: int) -> str:
    return f"baselines/permutation_fold_{fold}"


def majority_row(table: LabelledTable, fold: FoldSplit) -> dict[str, float]:
    """Always predict the majority class of the training rows (a constant score)."""
    y_train, y_eval = table.labels[fold.train], table.labels[fold.eval]
    majority = int(np.mean(y_train) > 0.5)
    scores = np.full(len(y_eval), float(np.mean(y_train)))
    threshold = 0.0 if majority else 1.0  # everything flagged, or nothing
    return held_out_metrics(scores, y_eval, threshold)


def permuted_table(cfg: Config, table: LabelledTable, fold: FoldSplit) -> LabelledTable:
    """The fold's training and validation labels shuffled (a pure function of the split seed and the fold)."""
    rng = np.random.default_rng(cfg.cross_validation.random_state + 7919 * (fold.fold + 1))
    labels = table.labels.copy()
    fit_rows = np.concatenate([fold.train, fold.val])
    labels[fit_rows] = rng.permutation(labels[fit_rows])  # eval rows keep their true labels
    return dataclasses.replace(table, labels=labels, types=None)


def baselines(table: LabelledTable, folds: list[FoldSplit],
              permutation_fits: Optional[list[FitResult]]) -> dict[str, Any]:
    """Per-fold rows and their summary: the majority predictor, and the permutation models when trained."""
    majority = [majority_row(table, f) for f in folds]
    out: dict[str, Any] = {"majority": {"folds": majority, "summary": summarize(majority, TABLE_METRICS)}}
    if permutation_fits is not None:
        rows = [{m: r.eval_metrics[m] for m in TABLE_METRICS} for r in permutation_fits]
        out["permutation"] = {"folds": rows, "summary": summarize(rows, TABLE_METRICS)}
    return out


def judge(summary: dict[str, dict[str, float]], oof_scores: np.ndarray, oof_labels: np.ndarray,
          found: dict[str, Any], threshold_method: Optional[str]) -> dict[str, Any]:
    """The verdict of a CV run from its fold summary, out-of-fold scores and baselines."""
    permutation = found.get("permutation")
    return verdict(summary["auroc"], auroc_vs_chance(oof_scores, oof_labels),
                   permutation["summary"] if permutation else None, summary["accuracy"]["mean"],
                   found["majority"]["summary"]["accuracy"]["mean"], summary["fpr"]["mean"],
                   [row["auroc"] for row in permutation["folds"]] if permutation else [], threshold_method)


def verdict(model_auroc: dict[str, float], perm_test: dict[str, float], perm_summary: Optional[dict[str, Any]],
            accuracy_mean: float, majority_accuracy: float, fpr_mean: float,
            perm_values: Optional[list[float]] = None, threshold_method: Optional[str] = None) -> dict[str, Any]:
    """Does the model beat chance? The test is the label-permutation (Mann-Whitney) p-value of the
    out-of-fold ROC AUC (p < 0.01): the exact null of this ranking under shuffled labels, stable whatever
    the data's size or balance. The models retrained on shuffled labels must also score lower on average."""
    significant = perm_test["p_value"] < CHANCE_P
    above_shuffled = perm_summary is None or model_auroc["mean"] > perm_summary["auroc"]["mean"]
    p_text = format_p(perm_test["p_value"])
    head = (f"out-of-fold ROC AUC {perm_test['observed']:.3f} ({p_text} against shuffled labels, one-sided "
            f"Mann-Whitney, cut-off p < {CHANCE_P:g}; under shuffled labels this ranking's ROC AUC is "
            f"{perm_test['mean']:.3f} ± {perm_test['std']:.3f}), {model_auroc['mean']:.3f} ± "
            f"{model_auroc['std']:.3f} over folds")
    if significant and above_shuffled:
        text = f"The model beats chance: {head}."
    elif not significant:
        text = (f"The model does NOT beat chance: {head}. The labels look unrelated to the features; "
                f"an accuracy of {accuracy_mean:.3f} means nothing when always answering 'normal' scores "
                f"{majority_accuracy:.3f}.")
    else:
        text = (f"The model does NOT beat chance: {head}. Its out-of-fold ranking is better than random, but "
                f"models trained on shuffled labels score as well on average: too little data or a leak to look for.")
    said = {"beats_chance": bool(significant and above_shuffled), "message": text, "permutation_test": perm_test,
            "decided_by": "Mann-Whitney test of the out-of-fold ROC AUC, and the mean of the label-permutation "
                          "models", "operating_point": operating_point(
                fpr_mean, "each fold's validation-chosen threshold", "the model flags on average", threshold_method)}
    if perm_summary is not None:
        said["permutation_models"] = permutation_note(perm_summary["auroc"], perm_values or [])
    return said


def permutation_note(auroc: dict[str, float], values: list[float]) -> str:
    """What the label-permutation models say, and why one of them may land far from 0.5."""
    spread = f", each fold: {', '.join(f'{v:.3f}' for v in values)}" if values else ""
    return (f"Label-permutation models (this model retrained on shuffled labels, one per fold): ROC AUC "
            f"{auroc['mean']:.3f} ± {auroc['std']:.3f}, from {auroc['min']:.3f} to {auroc['max']:.3f}{spread}. "
            f"They show what training produces when the labels carry no information. One such model scores all "
            f"its held-out rows at once, and what it learns from noise (such as how unusual a row is) can line "
            f"up with the true labels, so on small or lopsided data a single one may land far from 0.5; their "
            f"spread, not 0.5, is the chance range for this model and data. The verdict rests on the "
            f"Mann-Whitney test above, which needs no retraining; these models only have to score lower on average.")
