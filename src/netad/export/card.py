"""The model card (README.md) of an exported model: what it was trained on, how well it did, what it publishes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

from netad.data.preprocessing import mostly_addresses
from netad.models.checkpoint import CHECKPOINT_KEY

CARD_METRICS = ("accuracy", "precision", "recall", "f1", "auroc", "auprc", "fpr")


def cv_summary_of(config: dict[str, Any], ckpt: dict[str, Any]) -> tuple[Optional[dict], Optional[str]]:
    training = config["training"]
    if training.get("cv_summary"):
        return training["cv_summary"], training.get("cv_verdict")
    run_dir = ckpt[CHECKPOINT_KEY].get("metadata", {}).get("run_dir")
    path = Path(run_dir) / "cv_results.json" if run_dir else None
    if path is not None and path.is_file():
        saved = json.loads(path.read_text())
        return saved.get("summary"), saved.get("verdict", {}).get("message")
    return None, None


def evaluation_card_of(ckpt: dict[str, Any]) -> Optional[str]:
    """The training run's ``evaluation_card.md``, when its run folder is still there."""
    run_dir = ckpt[CHECKPOINT_KEY].get("metadata", {}).get("run_dir")
    path = Path(run_dir) / "evaluation_card.md" if run_dir else None
    return path.read_text() if path is not None and path.is_file() else None


def identifier_columns(preprocessing: dict[str, Any]) -> dict[str, str]:
    """{text column: why it looks like an identifier}: the training-time verdict, or for checkpoints from before
    it was recorded, the columns whose stored categories are IP addresses."""
    cat = preprocessing["categorical"]
    if "identifier_like" in cat:
        return dict(cat["identifier_like"])
    return {col: "IP addresses" for col, values in zip(cat["columns"], cat["categories"])
            if mostly_addresses(values)}


def stored_values(categorical: dict[str, Any], column: str) -> int:
    """How many training values of a text column the preprocessing state holds."""
    columns = categorical["columns"]
    return len(categorical["categories"][columns.index(column)]) if column in columns else 0


def _published(config: dict[str, Any]) -> list[str]:
    """The card's section on the training values that config.json holds."""
    pre, label = config["preprocessing"], config["label"]
    cat, num = pre["categorical"], pre["numeric"]
    lines = ["", "## What this file publishes", "",
             "Besides the weights, `config.json` holds values computed from the training rows; publishing the "
             "model publishes them:", "",
             f"- the names of the {len(pre['input_columns'])} input columns"
             + (f" and of the label column (`{label['column']}`" if label.get("column") else "")
             + (f", normal value `{label['normal_value']}`" if label.get("normal_value") is not None else "")
             + (")" if label.get("column") else "")]
    if cat["columns"]:
        lines.append("- each text column's category values, verbatim (its most frequent training values): "
                     + ", ".join(f"`{c}` ({len(v)} values)" for c, v in zip(cat["columns"], cat["categories"])))
    if num["columns"]:
        stats = {"standard": "mean and standard deviation", "minmax": "minimum and range"}.get(pre.get("scaler"))
        names = ", ".join(f"`{c}`" for c in num["columns"])
        lines.append(f"- the scaler statistics ({stats}, after the log transform where there is one) of each "
                     f"numeric column: {names}" if stats else "- no scaler statistics (scaler `none`)")
        if pre.get("nan_policy") == "median":
            lines.append(f"- the imputation values (training medians) of each numeric column: {names}")
        else:
            lines.append(f"- no imputation values from the data (nan_policy `{pre.get('nan_policy', 'error')}`)")
    if pre.get("baseline") is not None:
        lines.append("- the explanation baseline: each numeric feature's median over the normal training rows "
                     "(scaled) and each boolean and text column's most frequent value among them")
    if config.get("data_summary"):
        lines.append("- the training-data summary for drift checks (`netad drift`): each numeric column's deciles and "
                     "its distribution at the 1st to 99th percentiles (not its minimum or maximum), each boolean and "
                     "text column's value counts, and the model's score distribution on the validation rows")
    if config["novelty"]:
        lines.append(f"- the `{config['novelty']['kind']}` novelty detector's fitted state (computed from the "
                     "normal training rows, in model.safetensors)")
    lines.append("- the metrics above (aggregates over rows, no rows themselves)")
    for col, reason in identifier_columns(pre).items():
        lines += ["", f"**Warning:** text column `{col}` looks like an identifier ({reason}): publishing this model "
                      f"publishes {stored_values(cat, col)} of its training values (in config.json), and such a column rarely generalises "
                      "to new traffic. Consider training without it (`data.drop_columns`)."]
    return lines


def _fmt(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def model_card(config: dict[str, Any], cv_summary: Optional[dict], cv_verdict: Optional[str],
               test: Optional[dict[str, Any]], leakage: Optional[list[str]] = None,
               evaluation: Optional[str] = None) -> str:
    """README.md with YAML metadata for the Hub; ``leakage``: what the training run's leakage check found
    (None: a checkpoint from before the check, or one written with it off); ``evaluation``: the run's
    evaluation card, embedded one heading level down."""
    no_signal = bool(cv_verdict and "NOT beat chance" in cv_verdict)
    lines = [
        "---",
        "library_name: netad",
        "license: mit",
        "pipeline_tag: tabular-classification",
        "tags:",
        "- anomaly-detection",
        "- network-security",
        "- tabular-classification",
        "- pytorch",
        "- safetensors",
        "---",
        "",
        f"# netad {config['model_type']}: network-anomaly detection",
        "",
        f"A feedforward classifier ({' -> '.join(map(str, [config['architecture']['input_dim'], *config['architecture']['hidden_dims'], 1]))}) "
        f"trained with netad {config['package_version']} "
        f"(label column `{config['label']['column']}`"
        + (f", normal value `{config['label']['normal_value']}`" if config["label"]["normal_value"] is not None else "")
        + "). It scores raw records: preprocessing fitted on the training rows is part of the model.",
    ]
    if config["novelty"]:
        nov = config["novelty"]
        lines += ["", f"Hybrid: a row is also flagged when a `{nov['kind']}` novelty detector, fitted on normal "
                      f"training rows, scores it at or above {nov['threshold']:.4f} (a threshold that flags the "
                      "configured share of normal validation rows)."]
        if nov.get("degenerate"):
            lines += ["", f"**Warning:** {nov['degenerate']}."]
    lines += ["", "## Threshold", "",
              f"`is_anomaly = score >= {config['threshold']:.4f}`. The threshold was chosen on validation rows "
              f"({config['threshold_method']}), never on test rows."]
    cal = config.get("calibration")
    if cal:
        ece = cal.get("validation_ece") or {}
        lines += ["", "## Calibration", "",
                  f"The probability is calibrated ({cal['method']}) on the validation rows after training, and the "
                  f"threshold chosen on the calibrated scores. Expected calibration error on those rows: "
                  f"{_fmt(ece.get('before'), 4)} before, {_fmt(ece.get('after'), 4)} after (measured on the rows it was "
                  f"fitted on: test rows tell how it holds on new traffic)."]
    lines += ["", "## Cross-validation", ""]
    if cv_summary:
        lines += ["Metrics on each fold's held-out rows, mean ± std over folds:", "",
                  "| metric | mean ± std |", "| --- | --- |"]
        lines += [f"| {m} | {_fmt(cv_summary[m]['mean'])} ± {_fmt(cv_summary[m]['std'])} |"
                  for m in CARD_METRICS if m in cv_summary]
        if cv_verdict:
            lines += ["", cv_verdict]
    else:
        lines.append("Not cross-validated (a single train/validation split).")
    if leakage is not None:
        lines += ["", "## Leakage check", ""]
        lines += ([f"**Warning:** {message}" for message in leakage] if leakage else
                  ["Before training, no column alone separated the labels, no id rose with row order, and no "
                   "duplicate rows were shared with the test hold-out (`data.leakage_check`)."])
    lines += ["", "## Test hold-out", ""]
    if test:
        lines += [f"On {test['n_rows']} rows held out before training ({test['n_anomalies']} anomalies):", "",
                  "| metric | value | 95 % bootstrap CI |", "| --- | --- | --- |"]
        for m in CARD_METRICS:
            ci = test["ci"].get(m)
            ci_text = f"[{_fmt(ci['low'])}, {_fmt(ci['high'])}]" if ci else ""
            lines.append(f"| {m} | {_fmt(test['metrics'][m])} | {ci_text} |")
        lines += ["", f"Always answering the majority class would score accuracy {_fmt(test['majority_accuracy'])}."]
    else:
        lines.append("Not measured when this card was written (the training data was not available).")
    lines += ["", "## Intended use", "",
              "Ranking and flagging network records of the same kind and schema as the training data, as one "
              "signal for an analyst. Not a substitute for a security review; check it on your own traffic first."]
    lines += ["", "## Limitations", ""]
    if no_signal:
        lines.append("**The training labels carry no detectable signal: this model does not beat chance** (see the "
                     "cross-validation verdict). Its scores are noise; do not use it to detect anything.")
    lines += ["- It knows the traffic and attack types of its training data; attacks unlike them may score as normal"
              + (" (the hybrid's novelty part is there to catch some of them)." if config["novelty"] else "."),
              "- Columns are read by name; unseen categories go to an unknown bucket, and numeric drift is not detected.",
              "- Accuracy depends on the share of anomalies; compare it with the majority-class rate."]
    if evaluation:
        lines += [""] + [("#" + line) if line.startswith("#") else line for line in evaluation.rstrip().splitlines()]
    lines += _published(config)
    lines += ["", "## Use it", "", "```python", "from netad.inference import NetadPredictor",
              "model = NetadPredictor.from_pretrained(\"<repo id or folder>\")",
              "print(model.predict(\"records.csv\"))   # score and is_anomaly per row", "```", ""]
    return "\n".join(lines)
