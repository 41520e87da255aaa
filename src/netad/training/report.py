"""A CV run's results: the fold table (text for people, CSV), the out-of-fold predictions and
``cv_results.json``; and the lines train.py prints for a run."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from netad.data.loading import LabelledTable
from netad.data.splits import FoldSplit
from netad.io import atomic_target
from netad.metrics import TABLE_METRICS, format_type_table, seen_rows, type_recall
from netad.training.fit import FitResult, seen_types
from netad.training.runs import write_json

#: fold-table columns of data with a type column: recall on the attack types the fold's model saw in its
#: training rows, and on those it never saw
TYPE_COLUMNS = ["seen_recall", "unseen_recall"]


@dataclass
class CVResult:
    run_dir: Path
    folds: list[dict[str, Any]]
    summary: dict[str, dict[str, float]]
    baselines: dict[str, Any]
    verdict: dict[str, Any]
    final_checkpoint: Optional[str] = None
    files: dict[str, str] = field(default_factory=dict)
    #: out-of-fold recall per attack type and family, seen and unseen (data with a type column)
    attack_types: Optional[dict[str, Any]] = None
    #: what the leakage check found before training (None: the check was off)
    leakage: Optional[list[str]] = None


@dataclass
class SingleResult:
    """A single train/validation run: its fit, and where its best checkpoint was published."""

    run_dir: Path
    fit: FitResult
    best_model: str


def fold_row(result: FitResult, fold: FoldSplit, table: LabelledTable) -> dict[str, Any]:
    """One line of the fold table: the fold model's metrics on the fold's held-out rows."""
    row = {"fold": fold.fold, "n_eval": int(len(fold.eval)), "threshold": result.threshold,
           "best_epoch": result.best_epoch}
    row.update({m: result.eval_metrics[m] for m in TABLE_METRICS})
    if table.types is not None:
        flagged = np.asarray(result.eval_scores) >= result.threshold
        found = type_recall(flagged, table.labels[fold.eval], table.types[fold.eval], _fold_seen(table, fold))
        row.update({c: found[c] for c in TYPE_COLUMNS})
    return row


def _fold_seen(table: LabelledTable, fold: FoldSplit) -> np.ndarray:
    """Per held-out row of the fold: was its attack type in the fold's training or validation rows?"""
    return seen_rows(table.types[fold.eval], seen_types(table, np.concatenate([fold.train, fold.val])))


def out_of_fold(results: list[FitResult], folds: list[FoldSplit], table: LabelledTable) -> pd.DataFrame:
    """Every development row once: its fold, label, the fold model's score and its prediction (and with a type
    column, its attack type and whether the fold's model saw that type in training)."""
    parts = []
    for result, fold in zip(results, folds):
        scores = np.asarray(result.eval_scores, dtype=np.float64)
        part = pd.DataFrame({"row": fold.eval.astype(np.int64), "fold": fold.fold,
                             "label": table.labels[fold.eval].astype(np.int64), "score": scores,
                             "prediction": (scores >= result.threshold).astype(np.int64)})
        if table.types is not None:
            part["type"] = table.types[fold.eval]
            part["seen"] = _fold_seen(table, fold).astype(np.int64)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def oof_type_recall(oof: pd.DataFrame, family_of: dict[str, str]) -> Optional[dict[str, Any]]:
    """Recall per attack type over the out-of-fold predictions (each row scored by the model that did not
    train on it), or None without a type column."""
    if "type" not in oof:
        return None
    return type_recall(oof["prediction"], oof["label"], oof["type"], oof["seen"].astype(bool), family_of)


def write_tables(run_dir: Path, folds: list[dict[str, Any]], summary: dict[str, dict[str, float]],
                 oof: pd.DataFrame) -> dict[str, str]:
    """The fold table and out-of-fold predictions, each written whole or not at all (a full disk)."""
    csv_path = run_dir / "cv_results.csv"
    columns = list(folds[0].keys())
    with atomic_target(csv_path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(folds)
        for stat in ("mean", "std"):
            writer.writerow({c: (stat if c == "fold" else summary[c][stat] if c in summary else "") for c in columns})
    oof_path = run_dir / "oof_predictions.csv"
    with atomic_target(oof_path) as tmp:
        oof.to_csv(tmp, index=False)
    return {"cv_results_csv": str(csv_path), "oof_predictions": str(oof_path)}


def write_type_table(run_dir: Path, attack_types: dict[str, Any]) -> str:
    """``type_recall.csv``: one line per attack type (out-of-fold recall, family, seen in training)."""
    path = run_dir / "type_recall.csv"
    with atomic_target(path) as tmp:
        pd.DataFrame(attack_types["types"]).to_csv(tmp, index=False)
    return str(path)


def write_results(result: CVResult, run_name: str, n_rows: int, n_test_rows: int) -> None:
    """``cv_results.json``: per-fold metrics, their summary, baselines, verdict and the files of the run."""
    path = result.run_dir / "cv_results.json"
    result.files["cv_results_json"] = str(path)
    write_json(path, {"run": run_name, "folds": result.folds, "summary": result.summary,
                      "baselines": result.baselines, "verdict": result.verdict, "n_rows": n_rows,
                      "n_test_rows": n_test_rows, "final_checkpoint": result.final_checkpoint, "files": result.files,
                      **({"attack_types": result.attack_types} if result.attack_types else {}),
                      **({"leakage": result.leakage} if result.leakage is not None else {})})


def format_table(result: CVResult) -> str:
    """The fold table: one line per fold, mean and std, and the baselines' means."""
    # a type column no fold has a value for (seen types under by_type) is left out
    cols = ["fold"] + TABLE_METRICS + ["threshold"] + [
        c for c in TYPE_COLUMNS if c in result.folds[0] and any(np.isfinite(r[c]) for r in result.folds)]
    width = {c: max(9, len(c)) for c in cols}

    def cell(c: str, value: Any) -> str:
        if c == "fold" or isinstance(value, str):
            return f"{value:>{width[c]}}"
        return f"{'-':>{width[c]}}" if value is None or np.isnan(value) else f"{value:>{width[c]}.3f}"

    lines = ["  ".join(f"{c:>{width[c]}}" for c in cols)]
    for row in result.folds:
        lines.append("  ".join(cell(c, row[c]) for c in cols))
    lines.append("  ".join(cell(c, "mean" if c == "fold" else result.summary[c]["mean"]) for c in cols))
    lines.append("  ".join(cell(c, "± std" if c == "fold" else result.summary[c]["std"]) for c in cols))
    for name, base in (("majority", result.baselines.get("majority")), ("shuffled", result.baselines.get("permutation"))):
        if not isinstance(base, dict) or "summary" not in base:
            continue
        s = base["summary"]
        lines.append("  ".join(cell(c, name[:9] if c == "fold" else s[c]["mean"] if c in s else "-") for c in cols))
    return "\n".join(lines)


def cv_summary(result: CVResult) -> str:
    """What train.py --use-cv prints at the end: the table, the verdict, the operating point, the files."""
    lines = [f"Cross-validation ({len(result.folds)} folds), metrics on each fold's held-out rows:",
             format_table(result), "", result.verdict["message"], result.verdict["operating_point"]]
    if "permutation_models" in result.verdict:
        lines.append(result.verdict["permutation_models"])
    for message in result.leakage or []:  # said before training too, and repeated here where the figures are
        lines.append(f"Leakage check: {message}")
    if result.attack_types:
        lines += ["", "Recall per attack type, out of fold (seen: the type was in that fold's training rows):",
                  format_type_table(result.attack_types, limit=25)]
    lines.append(f"Results: {result.files['cv_results_json']} and {result.files['cv_results_csv']}")
    if "evaluation_card" in result.files:
        lines.append(f"Evaluation card (how these figures were made, and what they can be trusted for): "
                     f"{result.files['evaluation_card']}")
    if result.final_checkpoint:
        lines.append(f"Final model: {result.final_checkpoint}")
    return "\n".join(lines)


def single_summary(result: SingleResult) -> str:
    """What train.py prints after a single split: validation metrics and where the best checkpoint went."""
    fit = result.fit
    return "\n".join([
        f"Validation (threshold {fit.threshold:.3f}, chosen on these rows): "
        + ", ".join(f"{k} {v:.3f}" for k, v in fit.val_metrics.items()),
        f"Best checkpoint (epoch {fit.best_epoch}) copied to the default path: {result.best_model}",
    ])
