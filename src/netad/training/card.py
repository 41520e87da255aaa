"""``evaluation_card.md``: how a CV run's figures were made, what chose what, and what they can be trusted for.

It ends with a checklist after Arp et al., "Dos and Don'ts of Machine Learning in Computer Security"
(USENIX Security 2022): for each pitfall, what this run did about it. The exported model card embeds it.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from netad.config import Config
from netad.data.loading import LabelledTable
from netad.data.sources import data_digest
from netad.training.report import TYPE_COLUMNS, CVResult
from netad.training.runs import Splits

#: the share of attacks in the traffic a deployed model would see, for the base-rate line of the checklist
DEPLOYED_BASE_RATE = 0.001


def _f(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def precision_at_base_rate(recall: float, fpr: float, base_rate: float = DEPLOYED_BASE_RATE) -> float:
    """The share of alarms that are attacks when ``base_rate`` of the traffic is attacks (Bayes' rule)."""
    alarms = recall * base_rate + fpr * (1.0 - base_rate)
    return recall * base_rate / alarms if alarms else math.nan


def evaluation_card(cfg: Config, table: LabelledTable, splits: Splits, result: CVResult,
                    digest: Optional[str] = None, selection: Any = None) -> str:
    """The card's Markdown text; ``digest``: the data file's sha256 when the run already has it; ``selection``:
    the :class:`~netad.training.select.SelectionResult` of a ``train.py --select`` run."""
    cv, data, tc = cfg.cross_validation, cfg.data, cfg.training
    summary = result.summary
    n_anomalies = int(table.labels.sum())
    by_type = cv.strategy != "stratified"
    lines = ["# Evaluation card", "",
             f"Run `{result.run_dir.name}`, written by netad after cross-validation. Every figure comes from the "
             f"run folder's files (`cv_results.json`, `oof_predictions.csv`).", "",
             "## Data", "",
             f"- File `{table.source}`, sha256 `{digest or data_digest(table.source)}`",
             f"- {len(table)} rows, {n_anomalies} anomalous ({n_anomalies / max(len(table), 1):.1%}); label column "
             f"`{data.label_column}`" + (f", normal value `{data.normal_value}`" if data.normal_value is not None else "")]
    if table.types is not None:
        n_types = len(set(table.types[table.labels == 1]))
        lines.append(f"- Attack types from column `{data.type_column}`: {n_types}"
                     + (f", in families {', '.join(sorted(data.type_families))}" if data.type_families else ""))
    lines += ["", "## Split protocol", "",
              f"- Test hold-out: {len(splits.test)} rows ({data.test_size:.0%}, stratified by label, seed "
              f"{cv.random_state}), never used by training; `test.py` measures on it",
              f"- {len(splits.folds)}-fold cross-validation of the other {len(splits.dev)} rows, strategy "
              f"`{cv.strategy}`"
              + (": each attack " + ("type" if cv.strategy == "by_type" else "family") + "'s rows held out in one "
                 "fold, normal rows spread over all folds" if by_type else
                 ": i.i.d. folds" + (" stratified by label" if cv.stratify else "")
                 + ", so a held-out attack type occurs in the fold's training rows unless it is rare"),
              f"- Inside each fold's training part, a validation split of {data.val_size:.0%} (stratified by label)",
              "", "## What chose what", "",
              "| choice | chosen by | rows it saw |", "| --- | --- | --- |",
              "| preprocessing (scaler, encoders, imputation, log transform) | fitted | each fold's training rows |",
              f"| weights | {tc.optimizer}, {tc.num_epochs} epochs at most | each fold's training rows |",
              f"| epoch kept | best `{cfg.checkpoint.monitor}`"
              + (f", early stopping after {tc.early_stopping_patience} epochs" if tc.early_stopping_patience else "")
              + " | each fold's validation rows |",
              f"| decision threshold | `{cfg.threshold.method}` | each fold's validation rows |",
              "| architecture, learning rate and the other settings | the config, set by hand | none of the data |"]
    if selection is not None:
        lines += _selection_rows(selection)
    elif cfg.model.type == "hybrid":
        lines.append(f"| hybrid detector `{cfg.hybrid.detector}`, budget {cfg.hybrid.novelty_fpr} | the config, "
                     f"set by hand | none of this run's data |")
        lines.append("| the novelty detector's fit | fitted | each fold's normal training rows |")
    epochs = ", ".join(str(r["best_epoch"]) for r in result.folds)
    thresholds = ", ".join(f"{r['threshold']:.3f}" for r in result.folds)
    lines += ["", f"Epochs kept per fold: {epochs}. Thresholds per fold: {thresholds}.", "",
              "## Leakage check", ""]
    if result.leakage is None:
        lines.append("Off (`data.leakage_check: off`)." if cfg.data.leakage_check == "off" else
                     "Not run for this run (its folder has no `leakage_check.json`).")
    else:
        lines += [f"- **{m}**" for m in result.leakage] or [
            "No column alone separated the labels, no id rose with row order, no duplicate rows were shared "
            "with the test hold-out or repeated among the development rows."]
    lines += ["", "## Results, on each fold's held-out rows", "", "| metric | mean ± std over folds |",
              "| --- | --- |"]
    for key in ["accuracy", "precision", "recall", "f1", "auroc", "auprc", "fpr", *TYPE_COLUMNS]:
        if key in summary:
            lines.append(f"| {key} | {_f(summary[key]['mean'])} ± {_f(summary[key]['std'])} |")
    majority = result.baselines.get("majority", {}).get("summary", {})
    if majority:
        lines += ["", f"Always answering the majority class: accuracy {_f(majority['accuracy']['mean'])}, "
                      f"ROC AUC {_f(majority['auroc']['mean'])}."]
    lines += ["", result.verdict["message"]]
    kinds = result.attack_types
    if kinds:
        lines += ["", "Recall out of fold:", ""]
        for e in kinds.get("families", []):
            lines.append(f"- family {e['family']}: {_f(e['recall'])} ({e['rows']} rows)")
        lines.append(f"- on attack types the fold's model saw in training: {_f(kinds['seen_recall'])} "
                     f"({kinds['seen_rows']} rows); on types it never saw: {_f(kinds['unseen_recall'])} "
                     f"({kinds['unseen_rows']} rows)")
    if selection is not None:
        lines += _selection_section(selection)
    lines += ["", "## Checklist (after Arp et al., USENIX Security 2022)", ""]
    lines += _checklist(cfg, result, by_type, n_anomalies / max(len(table), 1), selection)
    return "\n".join(lines) + "\n"


def _selection_rows(selection: Any) -> list[str]:
    """The rows of "what chose what" that ``train.py --select`` adds."""
    chosen, metric = selection.chosen, selection.metric
    rows = [f"| model: **{chosen.name}**, among {len(selection.candidates)} candidates (detector, budget, rule) | "
            f"best fold mean of `{metric}` (`train.py --select`, `selection.csv`) | each fold's held-out rows, "
            f"attack types its models never saw |",
            "| each candidate's novelty detector | fitted | each fold's normal training rows |",
            "| each candidate's novelty threshold (budget) | the budget's share of normal rows | each fold's normal "
            "validation rows |"]
    if chosen.rule == "stack":
        rows += ["| stacking weights (logit, asinh of the novelty score) | logistic regression | per fold: the "
                 "other folds' held-out rows; final model: every fold's held-out rows |",
                 f"| the stacked score's threshold | `{selection.config.threshold.method}` | the validation rows |"]
    rows.append("| the final model's weights, epoch, threshold and novelty detector | as for each fold | the non-test "
                "rows (training and validation parts) |")
    return rows


def _selection_section(selection: Any) -> list[str]:
    metric = selection.metric
    lines = ["", "## Model selection (`train.py --select`)", "",
             f"Every candidate scored on the same {selection.strategy} folds' held-out rows; the table is "
             f"`selection.csv`, the chosen config `selected_config.yaml`. The fold means are the selection's own "
             f"figures: the winner's is slightly optimistic (the best of {len(selection.candidates)}).", "",
             f"| candidate | {metric} | ROC AUC | accuracy | recall | false-positive rate |",
             "| --- | --- | --- | --- | --- | --- |"]
    for c in sorted(selection.candidates, key=lambda c: -c.summary[metric]["mean"]):
        name = f"**{c.name}**" if c is selection.chosen else c.name
        lines.append(f"| {name} | " + " | ".join(f"{_f(c.summary[k]['mean'])} ± {_f(c.summary[k]['std'])}"
                                                  for k in (metric, "auroc", "accuracy", "recall", "fpr")) + " |")
    return lines


def _checklist(cfg: Config, result: CVResult, by_type: bool, share: float, selection: Any = None) -> list[str]:
    summary, kinds = result.summary, result.attack_types
    recall, fpr = summary["recall"]["mean"], summary["fpr"]["mean"]
    precision = precision_at_base_rate(recall, fpr)
    sampling = ("the folds hold out whole attack " + ("types" if cfg.cross_validation.strategy == "by_type" else
                "families") + ", so the figures estimate how the model does on attacks it never saw"
                if by_type else
                "the folds are i.i.d. samples of one file: " + (
                    f"all but {kinds['unseen_rows']} held-out attack rows are of types the fold trained on"
                    if kinds is not None else "held-out attacks are mostly of types the fold trained on")
                + ", so the figures overstate how the model does on new attacks"
                + ("" if kinds is None else "; `cross_validation.strategy: by_type` measures that"))
    leak = (("the leakage check was off" if cfg.data.leakage_check == "off" else "the leakage check did not run")
            if result.leakage is None else
            f"the leakage check found {len(result.leakage)} problem{'s' if len(result.leakage) != 1 else ''} "
            "(above)" if result.leakage else "the leakage check found nothing")
    return [
        f"- **Sampling bias.** One data file; {sampling}.",
        "- **Data snooping.** Preprocessing, epochs and threshold were chosen on each fold's training and "
        "validation rows only; the test hold-out was set aside before anything was fitted; " + leak + ".",
        "- **Spurious correlations.** " + ("A column that alone separates the labels, or an id that follows "
                                          "the file's order, would have been reported above; "
                                          if result.leakage is not None else "Not checked; ")
        + "artefacts that need several columns together are not detected.",
        ("- **Biased parameter selection.** The hybrid's detector, budget and combination rule were chosen on the "
         f"{selection.strategy} folds' held-out rows (development rows only, never the test hold-out); the other "
         "settings come from the config, set by hand." if selection is not None else
         "- **Biased parameter selection.** The model's settings come from the config, set by hand; no setting "
         "was chosen on the test hold-out or on the folds' held-out rows."),
        "- **Inappropriate baselines.** The same folds were scored by a majority-class predictor"
        + (" and by this model retrained on shuffled labels" if "permutation" in result.baselines else "")
        + "; the verdict above tests the ranking against chance.",
        "- **Inappropriate measures.** ROC AUC and PR AUC (threshold-free), recall and the false-positive rate at "
        "the validation-chosen threshold, and accuracy beside the majority-class rate.",
        f"- **Base-rate fallacy.** At the mean recall ({_f(recall)}) and false-positive rate ({_f(fpr)}), in "
        f"traffic where {DEPLOYED_BASE_RATE:.1%} of records are attacks, {_f(precision)} of the alarms would be "
        f"attacks (Bayes' rule); in this data {share:.1%} of the rows are anomalous.",
    ]
