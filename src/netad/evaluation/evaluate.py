"""Score a saved checkpoint on labelled rows: the rows recorded at training time, or any CSV.

Used by test.py and assess_model.py. Scores come from :class:`~netad.inference.NetadPredictor` on raw rows,
the code that serves the model (predict.py, the API), and every number from :mod:`netad.metrics`.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from netad.config import Config, apply_overrides, config_from_dict, load_config
from netad.data.loading import LabelledTable, check_columns, load_table
from netad.data.sources import data_digest, exists
from netad.data.preprocessing import TabularPreprocessor
from netad.errors import UserError
from netad.inference import NetadPredictor
from netad import metrics as M
from netad.metrics import CHANCE_P, HIGH_FPR, operating_point  # noqa: F401 (assess takes them from here)
from netad.models.checkpoint import CHECKPOINT_KEY, read_checkpoint
from netad.threads import limit_threads

#: the parts of the training data a checkpoint records, and how reports name them
PARTS = {"train": "train_indices", "validation": "val_indices", "held-out": "eval_indices", "test": "test_indices"}
#: the most bootstrap resamples test.py and assess_model.py accept (1000 already gives stable 95 % intervals)
MAX_BOOTSTRAP = 100_000


def check_bootstrap(n: int) -> int:
    """Refuse resample counts that are negative or would run for hours on a few rows."""
    if not 0 <= n <= MAX_BOOTSTRAP:
        raise UserError(f"--bootstrap {n} is out of range: give 0 (no intervals) to {MAX_BOOTSTRAP} resamples")
    return n


@dataclass
class ModelUnderTest:
    """A loaded checkpoint with everything needed to score data the way it was trained."""

    path: Path
    predictor: NetadPredictor  # the serving code: raw rows in, scores out
    metadata: dict[str, Any]  # what training recorded: config, run, the rows of each part
    saved_cfg: Config  # the config it was trained with
    cfg: Config  # how to read data files and where to log (--config, else the saved one)
    name: str

    @property
    def threshold(self) -> float:
        return self.predictor.threshold

    @property
    def preprocessor(self) -> TabularPreprocessor:
        return self.predictor.preprocessor

    def score(self, features: pd.DataFrame) -> np.ndarray:
        """Scores of raw rows (the model's input columns, as read from a CSV), all in one call."""
        return self.predictor.score(features)


def open_model(checkpoint: str | Path, config_path: Optional[str | Path] = None,
               model_name: Optional[str] = None, overrides: Optional[list[str]] = None) -> ModelUnderTest:
    """Load a checkpoint; ``overrides`` (``--set KEY=VALUE``) apply to ``config_path``, else to the saved config."""
    path = Path(checkpoint)
    ckpt = read_checkpoint(path, trained_model=True)  # damaged or crafted contents: one UserError naming it
    predictor = NetadPredictor.from_checkpoint_dict(ckpt, source=str(path))
    meta = ckpt[CHECKPOINT_KEY].get("metadata", {})
    if "config" not in meta:
        raise UserError(f"{path}: checkpoint has no saved config (not written by netad training)")
    saved = config_from_dict(meta["config"], f"{path} (saved config)")
    if config_path:
        cfg = load_config(config_path, overrides)
    elif overrides:
        cfg = config_from_dict(apply_overrides(saved.to_dict(), list(overrides)), f"{path} (saved config with --set)")
    else:
        cfg = saved
    default_name = f"{meta['run_name']}/{meta['split']}" if meta.get("run_name") and meta.get("split") else path.stem
    return ModelUnderTest(path, predictor, meta, saved, cfg, model_name or default_name)


def labelled_table(mut: ModelUnderTest, data_path: str | Path, purpose: str = "test.py") -> LabelledTable:
    """A labelled CSV read with the data settings of ``mut.cfg`` (its attack types too, where the file has the
    type column), checked against the model's input columns."""
    table = load_table(mut.cfg.data, data_path, require_labels=False, allow_one_class=True,
                       text_columns=mut.preprocessor.state["categorical"]["columns"])
    if (table.labels < 0).all():
        raise UserError(
            f"{table.source} has no label column '{mut.cfg.data.label_column}': {purpose} measures a model "
            f"against labels; score unlabelled traffic with batch scoring (predict.py) instead"
        )
    check_columns(mut.preprocessor.state["input_columns"], table.features, table.source)
    return table


def labelled_file(mut: ModelUnderTest, data_path: str | Path, purpose: str = "test.py") -> tuple[pd.DataFrame, np.ndarray, str]:
    """Features and labels of a labelled CSV (see :func:`labelled_table`)."""
    table = labelled_table(mut, data_path, purpose)
    return table.features, table.labels, table.source


def training_table(mut: ModelUnderTest) -> LabelledTable:
    data_path = Path(mut.saved_cfg.data.data_path)
    if not exists(data_path):
        raise UserError(f"training data {data_path} not found: run from the folder the model was trained in, "
                        f"or pass --data")
    table = load_table(mut.saved_cfg.data)
    meta = mut.metadata
    if (meta.get("data_rows") not in (None, len(table))
            or meta.get("data_sha256") not in (None, data_digest(data_path))):
        raise UserError(f"{data_path} is not the file this model was trained on (its contents changed): "
                        f"the recorded train/validation/test rows would point at other rows; pass --data")
    return table


def training_rows(mut: ModelUnderTest, table: Optional[LabelledTable] = None) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """The recorded parts of the training data (train, validation, held-out, test) that this checkpoint has."""
    meta = mut.metadata
    recorded = {part: key for part, key in PARTS.items() if meta.get(key) is not None}
    if not recorded:
        return {}
    table = training_table(mut) if table is None else table
    out = {}
    for part, key in recorded.items():
        rows = np.asarray(meta[key], dtype=np.int64)  # a tensor or a list
        if rows.size and rows.max() >= len(table):
            raise UserError(f"{table.source} has changed since training: the recorded {part} rows do not exist")
        out[part] = (table.features.iloc[rows], table.labels[rows])
    return out


@dataclass
class TestResult:
    model_name: str
    checkpoint: str
    data: str
    n_rows: int
    n_anomalies: int
    threshold: float
    metrics: dict[str, float]
    confusion: dict[str, int]
    ci: dict[str, dict[str, float]]
    majority_accuracy: float
    chance: dict[str, float]
    n_bootstrap: int
    kind: str = "classifier"
    threshold_method: Optional[str] = None  # how the stored threshold was chosen (max_f1, target_fpr)
    timestamp: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    #: recall per attack type and family, and on the types the model saw in training and those it did not
    attack_types: Optional[dict[str, Any]] = None
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)

    def csv_row(self) -> dict[str, Any]:
        row = {"timestamp": self.timestamp, "model_name": self.model_name, "kind": self.kind,
               "checkpoint": self.checkpoint,
               "data": self.data, "n_rows": self.n_rows, "n_anomalies": self.n_anomalies,
               "threshold": self.threshold, **self.metrics, **self.confusion}
        for name in M.CI_METRICS:
            row[f"{name}_ci_low"] = self.ci[name]["low"]
            row[f"{name}_ci_high"] = self.ci[name]["high"]
        row.update(majority_accuracy=self.majority_accuracy, auroc_p_value=self.chance["p_value"],
                   n_bootstrap=self.n_bootstrap)
        return row

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("scores")
        out.pop("labels")
        return out


RESULT_COLUMNS = list(TestResult("", "", "", 0, 0, 0.0, dict.fromkeys(M.TABLE_METRICS, 0.0),
                                 dict.fromkeys(("tn", "fp", "fn", "tp"), 0),
                                 {n: {"low": 0.0, "high": 0.0} for n in M.CI_METRICS}, 0.0,
                                 {"p_value": 0.0}, 0).csv_row())


def score_rows(mut: ModelUnderTest, features: pd.DataFrame, labels: np.ndarray, source: str,
               n_bootstrap: int = 1000, seed: int = 0, progress: bool = False,
               types: Optional[np.ndarray] = None) -> TestResult:
    """Every test.py number for these rows, at the model's stored threshold (with the config's CPU threads);
    with ``types`` (each row's attack type) also the recall per type, seen and unseen by the model."""
    check_bootstrap(n_bootstrap)
    threshold = mut.threshold
    with limit_threads(mut.cfg.trainer.num_threads):
        scores = mut.score(features)
        ci = M.bootstrap_ci(scores, labels, threshold, n_bootstrap, seed=seed, progress=progress) if n_bootstrap \
            else {n: {"low": math.nan, "high": math.nan, "n_used": 0} for n in M.CI_METRICS}
    return TestResult(
        model_name=mut.name, checkpoint=str(mut.path), data=source, n_rows=int(len(labels)),
        n_anomalies=int(np.sum(labels == 1)), threshold=threshold,
        metrics=M.held_out_metrics(scores, labels, threshold), confusion=M.confusion_counts(scores, labels, threshold),
        ci=ci, majority_accuracy=M.majority_accuracy(labels), chance=M.auroc_vs_chance(scores, labels),
        n_bootstrap=n_bootstrap, kind=describe(mut.predictor), scores=scores, labels=labels,
        threshold_method=mut.predictor.config.get("threshold_method"),
        attack_types=None if types is None else M.type_recall(
            scores >= threshold, labels, types, M.seen_rows(types, mut.metadata.get("seen_types")),
            mut.cfg.data.family_of),
    )


def describe(predictor: NetadPredictor) -> str:
    """'classifier', or for a hybrid which novelty detector joins it."""
    novelty = predictor.config.get("novelty")
    if not novelty:
        return "classifier"
    return f"hybrid: classifier or {novelty['kind']} novelty"


def evaluate_checkpoint(checkpoint: str | Path, data_path: Optional[str | Path] = None, *,
                        config_path: Optional[str | Path] = None, model_name: Optional[str] = None,
                        n_bootstrap: int = 1000, seed: int = 0, progress: bool = False,
                        mut: Optional[ModelUnderTest] = None) -> TestResult:
    """Metrics at the stored threshold. Without ``data_path``: the training run's test hold-out."""
    mut = mut or open_model(checkpoint, config_path, model_name)
    if data_path is not None:
        table = labelled_table(mut, data_path)
        features, labels, source, types = table.features, table.labels, table.source, table.types
    else:
        if mut.metadata.get("test_indices") is None:
            raise UserError(f"{mut.path} records no test rows: pass --data with a labelled CSV")
        table = training_table(mut)
        features, labels = training_rows(mut, table)["test"]
        if len(labels) == 0:
            raise UserError(f"{mut.path}: the run held out no test rows (data.test_size 0): pass --data")
        source = f"{mut.saved_cfg.data.data_path} (test hold-out)"
        types = None if table.types is None else table.types[np.asarray(mut.metadata["test_indices"], dtype=np.int64)]
    return score_rows(mut, features, labels, source, n_bootstrap, seed, progress, types=types)


def append_results(path: str | Path, result: TestResult) -> Path:
    """Add one row to the results CSV (created with a header when new)."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > 0:
        with path.open(newline="") as fh:
            header = next(csv.reader(fh), [])
        if header != RESULT_COLUMNS:
            raise UserError(f"{path} holds other columns than test.py writes: pass --results with a new file")
        new = False
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = True
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS)
    if new:
        writer.writeheader()
    writer.writerow(result.csv_row())
    with path.open("a", newline="") as fh:  # one write: parallel runs do not interleave rows
        fh.write(buf.getvalue())
    return path


TB_METRICS = {"Metrics/Accuracy": "accuracy", "Metrics/Precision": "precision", "Metrics/Recall": "recall",
              "Metrics/F1_Score": "f1", "Metrics/AUC": "auroc", "Metrics/PR_AUC": "auprc",
              "Metrics/False_Positive_Rate": "fpr"}


def publish_test_result(mut: ModelUnderTest, result: TestResult) -> dict[str, str]:
    """``Metrics/...`` scalars and the ConfusionMatrix, ROC_Curve and PrecisionRecall_Curve figures."""
    from netad.evaluation import plots
    from netad.tracking.publish import publish

    curve = [(mut.name, result.scores, result.labels)]
    figures = {"ConfusionMatrix": plots.confusion_matrix(result.confusion, f"Confusion matrix: {mut.name}"),
               "ROC_Curve": plots.roc_curves(curve), "PrecisionRecall_Curve": plots.pr_curves(curve)}
    row = result.csv_row()
    return publish(mut.cfg, kind="test", name=mut.name, group=mut.metadata.get("run_name"),
                   scalars={tag: result.metrics[key] for tag, key in TB_METRICS.items()},
                   figures=figures, tables={"Results": (list(row), [list(row.values())])})


def _fmt(value: float) -> str:
    return "   n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def p_text(p: float) -> str:
    """:func:`metrics.format_p`, with more digits where rounding would print the cut-off itself (0.009996)."""
    text = M.format_p(p)
    return f"p = {p:.6f}" if p < CHANCE_P and text == f"p = {CHANCE_P:.3g}" else text


def chance_verdict(chance: dict[str, float]) -> str:
    """Whether ROC AUC beats chance, with the test and its cut-off in the same sentence."""
    p = chance["p_value"]
    if math.isnan(p):
        return "ROC AUC vs chance: undefined (these rows hold one class only)"
    cut = f"cut-off p < {CHANCE_P:g}, one-sided Mann-Whitney"
    if p < CHANCE_P:
        return (f"ROC AUC vs chance: {p_text(p)} ({cut}): the model ranks anomalies above normal rows "
                f"better than chance")
    return (f"ROC AUC vs chance: {p_text(p)} (not below the {cut}): NO evidence that the model ranks "
            f"anomalies above normal rows better than chance")


def format_test_result(result: TestResult) -> str:
    """What test.py prints: metrics with intervals, the confusion matrix and what chance would give."""
    share = result.n_anomalies / max(result.n_rows, 1)
    lines = [
        f"Model {result.model_name} ({result.checkpoint}), {result.kind}",
        f"Data  {result.data}: {result.n_rows} rows, {result.n_anomalies} anomalies ({share:.1%})",
        f"Threshold {result.threshold:.4f} (chosen on validation rows at training time)",
        "",
        f"  {'metric':<10} {'value':>7}   95 % bootstrap CI ({result.n_bootstrap} resamples)",
    ]
    for name in M.TABLE_METRICS:
        value = result.metrics[name]
        extra = ""
        if name in result.ci and not math.isnan(result.ci[name]["low"]):
            extra = f"[{result.ci[name]['low']:.4f}, {result.ci[name]['high']:.4f}]"
        if name == "accuracy":
            extra = f"(always answering the majority class: {_fmt(result.majority_accuracy)})"
        if name == "fpr":
            extra = "(share of normal rows flagged)"
        lines.append(f"  {name:<10} {_fmt(value):>7}   {extra}")
    c = result.confusion
    lines += [
        "",
        "Confusion matrix       pred normal  pred anomaly",
        f"  true normal   {c['tn']:>12}  {c['fp']:>12}",
        f"  true anomaly  {c['fn']:>12}  {c['tp']:>12}",
        "",
    ]
    lines.append(chance_verdict(result.chance))
    lines.append(operating_point(result.metrics["fpr"], f"the stored threshold {result.threshold:.4f}",
                                 method=result.threshold_method))
    if result.attack_types and result.attack_types["types"]:
        seen = "seen: the type was in the model's training rows" if "seen_recall" in result.attack_types else \
            "the model records no training types"
        lines += ["", f"Recall per attack type ({seen}):", M.format_type_table(result.attack_types, limit=40)]
    return "\n".join(lines)
