"""assess_model.py: a report folder with PNG figures, ``report.html`` and ``metrics.json``.

One checkpoint (its recorded train / validation / test rows, or ``--data``), or every fold
checkpoint of a cross-validation run (``--use-folds``: each fold model on its own held-out rows).
The same figures and tables go to TensorBoard and, when enabled, W&B.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np
from matplotlib.figure import Figure

from netad.data.sources import source_name
from netad.errors import UserError
from netad import metrics as M
from netad.evaluation import plots
from netad.evaluation.importance import global_importance, importance_over_folds
from netad.evaluation.evaluate import (
    CHANCE_P,
    PARTS,
    TB_METRICS,
    ModelUnderTest,
    TestResult,
    check_bootstrap,
    labelled_table,
    open_model,
    operating_point,
    p_text,
    score_rows,
    training_rows,
    training_table,
)
from netad.tracking.publish import publish, safe_name

#: every figure a report can hold: file stem -> caption
FIGURES = {
    "class_balance": "Class balance: normal and anomalous rows in each part of the data.",
    "score_distribution": "Score distribution per true class on the evaluation rows, with the decision threshold. "
                          "Where the two histograms overlap the model cannot tell the classes apart.",
    "roc_curve": "ROC curves on the evaluation rows (one per fold with --use-folds). The dotted diagonal is chance.",
    "pr_curve": "Precision-recall curves on the evaluation rows. The dotted line is what a random ranking gives.",
    "threshold_metrics": "Precision, recall and F1 against the threshold on the evaluation rows; the dashed line "
                         "is the stored threshold, chosen on validation rows at training time.",
    "calibration": "Calibration: the observed anomaly rate in each score bin against the mean score. On the "
                   "diagonal, a score of 0.8 means 80 % of such rows are anomalies.",
    "fold_metrics": "Metrics of each cross-validation fold on its held-out rows, with mean ± std.",
    "type_recall": "Recall per attack type on the evaluation rows (the largest types; row counts in brackets): "
                   "types the model saw in its training rows apart from types it never saw.",
    "true_vs_predicted": "True against predicted class for the train, validation and evaluation rows. "
                         "A model far better on train than on the other parts has overfitted.",
    "importance": "Global importance of each input column on the evaluation rows: the mean size of its "
                  "contribution to the classifier's logit (per-record explanations averaged), and how much ROC AUC "
                  "the model loses when the column's values are shuffled among the rows (permutation importance).",
}

logger = logging.getLogger("netad")


@dataclass
class AssessResult:
    output_dir: Path
    report: Path
    figures: dict[str, Path]
    parts: dict[str, dict[str, float]]
    fold_rows: list[dict[str, Any]] = field(default_factory=list)
    fold_summary: dict[str, dict[str, float]] = field(default_factory=dict)
    evaluation: Optional[TestResult] = None
    logged: dict[str, str] = field(default_factory=dict)
    importance: Optional[dict[str, Any]] = None


def _recorded_types(table: Any, meta: dict[str, Any], key: str) -> Optional[np.ndarray]:
    """The attack types of the rows a checkpoint recorded under ``key`` (None without a type column)."""
    if table is None or table.types is None:
        return None
    return table.types[np.asarray(meta[key], dtype=np.int64)]


def _part_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    row = M.held_out_metrics(scores, labels, threshold)
    row.update(n_rows=int(len(labels)), n_anomalies=int(np.sum(labels == 1)))
    return row


def assess_checkpoint(checkpoint: str | Path, *, data_path: Optional[str | Path] = None,
                      config_path: Optional[str | Path] = None, model_name: Optional[str] = None,
                      output: Optional[str | Path] = None, n_bootstrap: int = 1000, log: bool = True,
                      overrides: Optional[list[str]] = None,
                      progress: bool = True) -> AssessResult:
    """Report on one checkpoint: its recorded parts, evaluated on its test hold-out or on ``data_path``.

    The default folder is ``reports/<run>_<split>`` for the hold-out and ``reports/<run>_<split>_<data stem>``
    with ``data_path``, so reports on different data do not overwrite each other.
    """
    check_bootstrap(n_bootstrap)
    mut = open_model(checkpoint, config_path, model_name, overrides)
    logger.info(f"Scoring {mut.name} ({mut.path})")
    table = training_table(mut) if any(mut.metadata.get(k) is not None for k in PARTS.values()) else None
    parts = training_rows(mut, table)
    types = None
    if data_path is not None:
        new = labelled_table(mut, data_path, "assess_model.py")
        features, labels, source, types = new.features, new.labels, new.source, new.types
        eval_name = "evaluation data"
    elif "test" in parts and len(parts["test"][1]):
        features, labels = parts["test"]
        source, eval_name = f"{mut.saved_cfg.data.data_path} (test hold-out)", "test"
        types = _recorded_types(table, mut.metadata, "test_indices")
    elif "held-out" in parts:
        features, labels = parts["held-out"]
        source, eval_name = f"{mut.saved_cfg.data.data_path} (fold held-out rows)", "held-out"
        types = _recorded_types(table, mut.metadata, "eval_indices")
    else:
        raise UserError(f"{mut.path} records no test rows: pass --data with a labelled CSV")
    evaluation = score_rows(mut, features, labels, source, n_bootstrap, progress=progress, types=types)
    threshold = mut.threshold
    raw = mut.predictor.uncalibrated_score(features) if mut.predictor.calibration is not None else None

    # train and validation rows, the run's test hold-out when --data evaluates elsewhere, the evaluation rows
    keep = ("train", "validation", "test") if data_path is not None else ("train", "validation")
    scored = {("test hold-out" if part == "test" else part): (mut.score(f), y) for part, (f, y) in parts.items()
              if part in keep and len(y)}
    scored[eval_name] = (evaluation.scores, evaluation.labels)
    part_rows = {part: _part_metrics(s, y, threshold) for part, (s, y) in scored.items()}

    figures: dict[str, Figure] = {
        "class_balance": plots.class_balance({p: y for p, (_, y) in scored.items()}),
        "score_distribution": plots.score_distribution(evaluation.scores, evaluation.labels, threshold,
                                                       f"Score distribution: {eval_name} rows"),
        "roc_curve": plots.roc_curves([(eval_name, evaluation.scores, evaluation.labels)]),
        "pr_curve": plots.pr_curves([(eval_name, evaluation.scores, evaluation.labels)]),
        "threshold_metrics": plots.threshold_metrics(evaluation.scores, evaluation.labels, threshold),
        "calibration": plots.calibration(evaluation.scores, evaluation.labels, before=raw),
        "true_vs_predicted": plots.true_vs_predicted(
            {p: M.confusion_counts(s, y, threshold) for p, (s, y) in scored.items()}),
    }
    if evaluation.attack_types and evaluation.attack_types["types"]:
        figures["type_recall"] = plots.type_recall(evaluation.attack_types)
    fold_rows, fold_summary = _cv_table(mut)
    if fold_rows:
        figures["fold_metrics"] = plots.fold_metrics(fold_rows, M.TABLE_METRICS, fold_summary)
    found = _importance(mut, features, labels)
    if found is not None:
        figures["importance"] = plots.importance(found)
    default = mut.name if data_path is None else f"{mut.name}_{source_name(data_path)}"
    out = Path(output) if output else Path("reports") / safe_name(default)
    result = AssessResult(out, out / "report.html", {}, part_rows, fold_rows, fold_summary, evaluation,
                          importance=found)
    info = {"Model": mut.name, "Checkpoint": str(mut.path), "Evaluation rows": source,
            "Threshold": f"{threshold:.4f} (chosen on validation rows at training time)",
            "ROC AUC vs chance": _chance_text(evaluation.chance, "the evaluation rows"),
            "Majority-class accuracy": f"{evaluation.majority_accuracy:.4f} on the evaluation rows "
                                       f"(model: {evaluation.metrics['accuracy']:.4f})",
            "Operating point": operating_point(evaluation.metrics["fpr"], f"the stored threshold {threshold:.4f}"),
            "Calibration": _calibration_text(mut, evaluation.scores, evaluation.labels, raw),
            "Cross-validation verdict": cv_verdict(mut.metadata)}
    _write(result, figures, info, title=f"Assessment of {mut.name}")
    if log:
        scalars = {tag: evaluation.metrics[key] for tag, key in TB_METRICS.items()}
        result.logged = _publish(mut, mut.name, result, figures, scalars, group=mut.metadata.get("run_name"))
    return result


def _cv_results(run_dir: Optional[str | Path]) -> Optional[dict[str, Any]]:
    """The run folder's cv_results.json, or None when the run has none (single split, folds not gathered)."""
    path = Path(run_dir) / "cv_results.json" if run_dir else None
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); rerun train.py --use-cv --gather to rewrite it") from None


def _cv_table(mut: ModelUnderTest) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """The fold table of the CV run this checkpoint came from, when there is one."""
    saved = _cv_results(mut.metadata.get("run_dir"))
    if saved is None:
        return [], {}
    return saved["folds"], saved["summary"]


def cv_verdict(meta: dict[str, Any]) -> str:
    """Does the run beat chance across folds: the checkpoint's own verdict, else its run's cv_results.json."""
    if meta.get("cv_verdict"):
        return str(meta["cv_verdict"])
    saved = _cv_results(meta.get("run_dir"))
    message = ((saved or {}).get("verdict") or {}).get("message")
    if message:
        return str(message)
    if meta.get("fold") is not None:
        return ("No cross-validation verdict yet: this fold's run has no cv_results.json "
                "(its folds were not summarised; train.py --use-cv --gather writes it)")
    return ("Not cross-validated: this model was trained on one train/validation split, so there is no "
            "verdict over folds on whether it beats chance (train.py --use-cv gives one)")


def find_fold_checkpoints(run_dir: Path) -> list[Path]:
    found = sorted(run_dir.glob("fold_*/best.ckpt"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not found:
        raise UserError(f"{run_dir}: no fold checkpoints (fold_*/best.ckpt); is it a cross-validation run folder?")
    return found


def assess_folds(*, checkpoint: Optional[str | Path] = None, run: Optional[str | Path] = None,
                 output: Optional[str | Path] = None, log: bool = True,
                 overrides: Optional[list[str]] = None) -> AssessResult:
    """Every fold checkpoint of a CV run, each on the rows it held out (``overrides`` apply to each saved config)."""
    if run is None:
        if checkpoint is None:
            raise UserError("--use-folds needs --run RUN_FOLDER or a --model from a CV run")
        run_dir = open_model(checkpoint).metadata.get("run_dir")
        if not run_dir:
            raise UserError(f"{checkpoint} does not record its run folder: pass --run RUN_FOLDER")
        run = run_dir
    run_dir = Path(run)
    if not run_dir.is_dir():
        raise UserError(f"run folder not found: {run_dir}")
    paths = find_fold_checkpoints(run_dir)
    table = None
    fold_rows: list[dict[str, Any]] = []
    curves, pooled_scores, pooled_labels = [], [], []
    confusion: dict[str, dict[str, int]] = {}
    per_part: dict[str, list[dict[str, float]]] = {}
    thresholds = []
    first_parts: dict[str, np.ndarray] = {}
    test_labels = None
    importances = []
    pooled_raw: list[np.ndarray] = []
    for path in paths:
        mut = open_model(path, overrides=overrides)
        fold = int(mut.metadata.get("fold", path.parent.name.split("_")[1]))
        logger.info(f"Scoring fold {fold} ({path})")
        table = training_table(mut) if table is None else table
        parts = training_rows(mut, table)
        if "held-out" not in parts:
            raise UserError(f"{path} records no held-out rows (trained before this version): retrain the run")
        threshold = mut.threshold
        thresholds.append(threshold)
        if mut.predictor.calibration is not None:
            pooled_raw.append(mut.predictor.uncalibrated_score(parts["held-out"][0]))
        for part in ("train", "validation", "held-out"):
            features, labels = parts[part]
            scores = mut.score(features)
            counts = M.confusion_counts(scores, labels, threshold)
            total = confusion.setdefault(part, dict.fromkeys(counts, 0))
            for k, v in counts.items():
                total[k] += v
            per_part.setdefault(part, []).append(_part_metrics(scores, labels, threshold))
            if part == "held-out":
                row = {"fold": fold, "threshold": threshold, **_part_metrics(scores, labels, threshold)}
                fold_rows.append(row)
                curves.append((f"fold {fold}", scores, labels))
                pooled_scores.append(scores)
                pooled_labels.append(labels)
        found = _importance(mut, *parts["held-out"])
        if found is not None:
            importances.append(found)
        if not first_parts:
            first_parts = {f"train (fold {fold})": parts["train"][1], f"validation (fold {fold})": parts["validation"][1]}
            test_labels = parts["test"][1] if "test" in parts else None
    scores = np.concatenate(pooled_scores)
    labels = np.concatenate(pooled_labels)
    mean_threshold = float(np.mean(thresholds))
    summary = M.summarize(fold_rows, M.TABLE_METRICS + ["threshold"])
    balance = {"all rows": table.labels, **first_parts, "held-out (all folds)": labels}
    if test_labels is not None and len(test_labels):
        balance["test hold-out"] = test_labels
    figures = {
        "class_balance": plots.class_balance(balance),
        "score_distribution": plots.score_distribution(scores, labels, mean_threshold,
                                                       "Score distribution: held-out rows of all folds"),
        "roc_curve": plots.roc_curves(curves),
        "pr_curve": plots.pr_curves(curves),
        "threshold_metrics": plots.threshold_metrics(scores, labels, mean_threshold),
        "calibration": plots.calibration(scores, labels,
                                         before=np.concatenate(pooled_raw) if len(pooled_raw) == len(paths) else None),
        "fold_metrics": plots.fold_metrics(fold_rows, M.TABLE_METRICS, summary),
        "true_vs_predicted": plots.true_vs_predicted(confusion),
    }
    found = importance_over_folds(importances) if importances and len(importances) == len(paths) else None
    if found is not None:
        figures["importance"] = plots.importance(found)
    chance = M.auroc_vs_chance(scores, labels)
    held = confusion["held-out"]
    pooled_fpr = held["fp"] / (held["fp"] + held["tn"]) if held["fp"] + held["tn"] else math.nan
    saved = _cv_results(run_dir)
    verdict = ((saved or {}).get("verdict") or {}).get("message") or (
        f"No cross-validation verdict yet: {run_dir} has no cv_results.json "
        f"(its folds were not summarised; train.py --use-cv --gather writes it)")
    name = f"{run_dir.name}/folds"
    out = Path(output) if output else Path("reports") / safe_name(name)
    # each part's metrics averaged over the fold models
    parts_table = {f"{part} (mean of folds)": {k: round(v["mean"]) if k.startswith("n_") else v["mean"]
                                               for k, v in M.summarize(rows).items()}
                   for part, rows in per_part.items()}
    result = AssessResult(out, out / "report.html", {}, parts_table, fold_rows, summary, importance=found)
    info = {"Run": str(run_dir), "Fold checkpoints": ", ".join(str(p) for p in paths),
            "Evaluation rows": "each fold model on the rows it held out (out-of-fold)",
            "Thresholds": f"one per fold, chosen on that fold's validation rows; mean {mean_threshold:.4f} "
                          f"(drawn in the pooled figures)",
            "ROC AUC vs chance": _chance_text(chance, "pooled out-of-fold scores"),
            "Majority-class accuracy": f"{M.majority_accuracy(labels):.4f} on the held-out rows",
            "Operating point": operating_point(pooled_fpr, f"each fold's stored threshold (mean {mean_threshold:.4f})",
                                               flags="the fold models flag"),
            "Calibration": _calibration_text(mut, scores, labels,
                                             np.concatenate(pooled_raw) if len(pooled_raw) == len(paths) else None),
            "Cross-validation verdict": verdict}
    _write(result, figures, info, title=f"Assessment of run {run_dir.name}: {len(paths)} fold models")
    if log:
        scalars = {f"{tag}_{stat}": summary[key][stat] for tag, key in TB_METRICS.items() for stat in ("mean", "std")}
        result.logged = _publish(mut, name, result, figures, scalars, group=run_dir.name)
    return result


def _chance_text(chance: dict[str, float], what: str) -> str:
    p = chance["p_value"]
    if math.isnan(p):
        return "undefined (one class only)"
    verdict = "better than chance" if p < CHANCE_P else "NOT distinguishable from chance"
    return (f"ROC AUC {chance['observed']:.4f}, {p_text(p)} (one-sided Mann-Whitney on {what}, cut-off "
            f"p < {CHANCE_P:g}): {verdict}")


# ------------------------------------------------------------------ output
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4f}"
    return html.escape(str(v))


def _html_table(columns: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _tables(result: AssessResult) -> dict[str, tuple[list[str], list[list[Any]]]]:
    keys = ["n_rows", "n_anomalies"] + M.TABLE_METRICS
    tables = {"Metrics by part": (["part"] + keys, [[p] + [r[k] for k in keys] for p, r in result.parts.items()])}
    ev = result.evaluation
    if ev is not None:
        rows = [[m, ev.metrics[m], ev.ci[m]["low"], ev.ci[m]["high"]] for m in M.CI_METRICS]
        tables["Evaluation rows: 95 % bootstrap intervals"] = (["metric", "value", "low", "high"], rows)
    if result.fold_rows:
        fold_keys = [k for k in M.TABLE_METRICS + ["threshold"] if k in result.fold_rows[0]]
        rows = [[r["fold"]] + [r[k] for k in fold_keys] for r in result.fold_rows]
        tables["Folds"] = (["fold"] + fold_keys, rows)
        stats = ["mean", "std", "min", "max"]
        tables["Folds: mean, std, min, max"] = (
            ["metric"] + stats, [[k] + [result.fold_summary[k][s] for s in stats] for k in fold_keys
                                 if k in result.fold_summary])
    found = result.importance
    if found is not None:
        keys = ["mean_abs_attribution", "permutation_auroc_drop", "permutation_std"]
        if found.get("n_folds"):
            keys.insert(1, "mean_abs_attribution_std")
        tables["Global importance"] = (["column"] + keys, [[r["column"]] + [r[k] for k in keys]
                                                           for r in found["columns"]])
        if found.get("n_folds"):
            folds = list(found["columns"][0]["folds"])
            tables["Global importance by fold (mean |attribution|)"] = (
                ["column"] + folds, [[r["column"]] + [r["folds"][f] for f in folds] for r in found["columns"]])
    return tables


def _calibration_text(mut: ModelUnderTest, scores: np.ndarray, labels: np.ndarray, raw: Optional[np.ndarray]) -> str:
    """The evaluation rows' expected calibration error, and before the model's calibration when it has one."""
    ece = M.expected_calibration_error(scores, labels)
    if raw is None:
        return f"none; expected calibration error {ece:.4f} on the evaluation rows"
    method = mut.predictor.calibration.method
    return (f"{method}, fitted on the validation rows; expected calibration error on the evaluation rows {ece:.4f} "
            f"({M.expected_calibration_error(raw, labels):.4f} before calibration)")


def _importance(mut: ModelUnderTest, features: Any, labels: np.ndarray) -> Optional[dict[str, Any]]:
    """Global importance on the evaluation rows, or None (said in the log) for a model without a baseline."""
    found = global_importance(mut.predictor, features, labels)
    if found is None:
        logger.info(f"{mut.path}: no explanation baseline (trained before netad explained scores): "
                    f"no importance figure")
    return found


def _write(result: AssessResult, figures: dict[str, Figure], info: dict[str, str], title: str) -> None:
    """The PNGs, a report.html that embeds them (it stands alone when copied) and metrics.json."""
    out = result.output_dir
    out.mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        result.figures[name] = plots.save_png(fig, out / f"{name}.png")
    ev = result.evaluation
    tables = _tables(result)
    sections = [f"<h1>{html.escape(title)}</h1>",
                f"<p class='when'>Written {datetime.now(timezone.utc).isoformat(timespec='seconds')}</p>",
                "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in info.items())
                + "</dl>"]
    for name, (cols, rows) in tables.items():
        sections.append(f"<h2>{html.escape(name)}</h2>{_html_table(cols, rows)}")
    sections.append("<h2>Figures</h2>")
    for name, path in result.figures.items():  # embedded: the page alone shows them; the PNGs stay beside it
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        caption = html.escape(FIGURES[name])
        sections.append(f"<figure id='{html.escape(name)}'><img src='data:image/png;base64,{data}' alt='{caption}'>"
                        f"<figcaption><b>{html.escape(path.name)}</b>: {caption}</figcaption></figure>")
    page = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;"
        "text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}dt{font-weight:bold}"
        "dd{margin:0 0 .5em 1em}figure{margin:1.5em 0}img{max-width:100%;border:1px solid #eee}"
        "figcaption{color:#555;font-size:.9em}</style></head><body>"
        + "\n".join(sections) + "</body></html>\n"
    )
    result.report.write_text(page, encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(
        {"title": title, "info": info, "tables": {k: {"columns": c, "rows": r} for k, (c, r) in tables.items()},
         "figures": {k: str(v) for k, v in result.figures.items()},
         "evaluation": ev.to_json() if ev is not None else None}, indent=2, default=float))


def _publish(mut: ModelUnderTest, name: str, result: AssessResult, figures: dict[str, Figure],
             scalars: dict[str, float], group: Optional[str]) -> dict[str, str]:
    return publish(mut.cfg, kind="assess", name=name, group=group, scalars=scalars,
                   figures={f"Assess/{k}": v for k, v in figures.items()}, tables=_tables(result))
