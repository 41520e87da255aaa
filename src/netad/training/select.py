"""Model selection on the training file only: ``train.py --select``.

The hybrid's novelty detector, its budget and the combination rule are chosen by cross-validation that holds
attack types out (``by_type``, or ``by_family`` when the config says so), so every candidate is judged on
attacks its models never saw, the situation the novelty part is there for. The test hold-out is set aside
before anything is fitted and never read.

1. The classifier is cross-validated once (the run's ``fold_<k>`` fits).
2. In each fold, every detector of ``selection.detectors`` is fitted on the fold's normal training rows; each
   budget of ``selection.budgets`` places its threshold on the fold's normal validation rows.
3. Candidates are scored on each fold's held-out rows: the classifier alone; ``or`` per detector and budget
   (thresholds from the validation rows); ``stack`` per detector, a logistic model of the logit and the
   novelty score learned on the *other* folds' held-out rows (cross-fitted, so no fold's figure saw its own
   rows) and thresholded on the fold's validation rows.
4. The candidate with the best fold mean of ``selection.metric`` wins; ties go to the simpler one. For
   ``stack`` the final weights are learned on every fold's held-out rows.
5. The final model is trained with the chosen settings on the non-test rows, as ``--use-cv`` trains it, and
   becomes ``best_model.ckpt``.

The run folder gets ``selection.csv`` (the table), ``selection.json`` (per fold, with the rows each figure
saw), ``selected_config.yaml`` (the config that retrains the chosen model) and an evaluation card that says
what chose what.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import torch
import yaml

from netad.config import Config
from netad.data.splits import FoldSplit, split_val
from netad.detectors.base import fpr_cut
from netad.errors import UserError
from netad.inference import NetadPredictor
from netad.io import atomic_target
from netad.metrics import TABLE_METRICS, choose_threshold, held_out_metrics, recall_at_fpr, summarize
from netad.models.novelty import hybrid_score, stack_features
from netad.threads import limit_threads
from netad.training.card import evaluation_card
from netad.training.cv import Training, run_cv
from netad.training.fit import fit_novelty_detector
from netad.training.report import CVResult
from netad.training.runs import choose_run_name, find_run, open_run, read_run_file, write_json

log = logging.getLogger("netad")
REQUEST = "selection_request.yaml"  # the config --select was given: the chosen model's config starts from it
#: the columns of the selection table, besides the metric it selects by
SHOWN = ["auroc", "accuracy", "recall", "fpr", "detection_at_1pct_fpr"]


@dataclass
class FoldParts:
    """One fold's classifier and novelty scores on its validation and held-out rows."""

    fold: FoldSplit
    threshold: float
    val_logit: torch.Tensor
    eval_logit: torch.Tensor
    val_y: np.ndarray
    eval_y: np.ndarray
    val_z: dict[str, torch.Tensor] = field(default_factory=dict)
    eval_z: dict[str, torch.Tensor] = field(default_factory=dict)
    cuts: dict[str, dict[float, float]] = field(default_factory=dict)  # detector -> budget -> novelty threshold


@dataclass
class Candidate:
    name: str
    rule: str  # classifier | or | stack
    detector: Optional[str] = None
    budget: Optional[float] = None
    folds: list[dict[str, float]] = field(default_factory=list)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    auroc_out_of_fold: float = math.nan
    stack_weights: Optional[dict[str, float]] = None  # the final model's, learned on every fold's held-out rows

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SelectionResult:
    run_dir: Path
    strategy: str
    metric: str
    candidates: list[Candidate]
    chosen: Candidate
    config: Config
    cv: CVResult
    final_checkpoint: Optional[str] = None
    files: dict[str, str] = field(default_factory=dict)


def search_config(cfg: Config) -> Config:
    """The config of the selection's CV: the classifier alone, attack types held out, no final model."""
    if cfg.data.type_column is None:
        raise UserError("train.py --select holds attack types out of the folds: set data.type_column (the column "
                        "naming each row's attack type)")
    out = cfg.model_copy(deep=True)
    out.model.type = "classifier"
    out.hybrid = type(cfg.hybrid)()
    if out.cross_validation.strategy == "stratified":
        out.cross_validation.strategy = "by_type"
    out.cross_validation.train_final_model = False
    return out


# -------------------------------------------------------------------- scores
def fold_parts(t: Training, fold: FoldSplit, checkpoint: str) -> FoldParts:
    """The fold model's logits and every candidate detector's novelty scores on the fold's rows (the fold's
    training, validation and held-out rows only: all development rows)."""
    cfg = t.cfg
    predictor = NetadPredictor.from_checkpoint(checkpoint)
    pre = predictor.preprocessor

    def encoded(rows: np.ndarray) -> Any:
        return pre.encode(t.table.features.iloc[rows][predictor.columns])

    enc = {part: encoded(getattr(fold, part)) for part in ("train", "val", "eval")}
    with torch.no_grad():
        parts = FoldParts(fold, predictor.threshold, predictor.logits_encoded(enc["val"]),
                          predictor.logits_encoded(enc["eval"]), t.table.labels[fold.val], t.table.labels[fold.eval])
        x = {part: pre.to_matrix(e) for part, e in enc.items()}
        for name in cfg.selection.detectors:
            detector = fit_novelty_detector(name, cfg.detectors.params.get(name, {}), x["train"],
                                            t.table.labels[fold.train], cfg.training.seed + fold.fold)
            z_val = detector.decision_function(x["val"])
            parts.val_z[name] = torch.from_numpy(z_val)
            parts.eval_z[name] = torch.from_numpy(detector.decision_function(x["eval"]))
            normal = z_val[parts.val_y == 0]
            parts.cuts[name] = {b: fpr_cut(normal, b) for b in cfg.selection.budgets}
    return parts


def fit_stack(parts: list[FoldParts], detector: str) -> dict[str, float]:
    """Logistic stacking weights of (logit, asinh(novelty)) on these folds' held-out rows: attacks of types the
    fold's models never saw."""
    from sklearn.linear_model import LogisticRegression

    x = torch.cat([stack_features(p.eval_logit, p.eval_z[detector]) for p in parts]).numpy()
    y = np.concatenate([p.eval_y for p in parts])
    model = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    return {"logit": float(model.coef_[0][0]), "novelty": float(model.coef_[0][1]),
            "bias": float(model.intercept_[0])}


def _held_out(scores: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, float]:
    out = held_out_metrics(scores, y, threshold)
    out["detection_at_1pct_fpr"] = recall_at_fpr(scores, y, 0.01)
    out["threshold"] = threshold
    return out


def candidate_scores(cfg: Config, parts: list[FoldParts], candidate: Candidate) -> list[tuple[np.ndarray, float]]:
    """(held-out scores, threshold) of the candidate in each fold."""
    out = []
    for k, p in enumerate(parts):
        if candidate.rule == "classifier":
            out.append((torch.sigmoid(p.eval_logit.float()).numpy(), p.threshold))
        elif candidate.rule == "or":
            cut = torch.tensor(p.cuts[candidate.detector][candidate.budget], dtype=torch.float64)
            out.append((hybrid_score(p.eval_logit, p.eval_z[candidate.detector], p.threshold, cut).numpy(),
                        p.threshold))
        else:  # stack: weights from the other folds' held-out rows, threshold from this fold's validation rows
            fusion = {"rule": "stack", "weights": fit_stack(parts[:k] + parts[k + 1:], candidate.detector)}
            unused = torch.tensor(0.0, dtype=torch.float64)
            val = hybrid_score(p.val_logit, p.val_z[candidate.detector], p.threshold, unused, fusion).numpy()
            threshold = choose_threshold(val, p.val_y, cfg.threshold.method, cfg.threshold.target_fpr)
            out.append((hybrid_score(p.eval_logit, p.eval_z[candidate.detector], threshold, unused, fusion).numpy(),
                        threshold))
    return out


def candidates_of(cfg: Config) -> list[Candidate]:
    """Every candidate, simplest first (ties go to the earlier one)."""
    sc = cfg.selection
    found = [Candidate("classifier", "classifier")] if sc.include_classifier else []
    if "or" in sc.combine:
        found += [Candidate(f"or {d} @ {b:g}", "or", d, b) for d in sc.detectors for b in sc.budgets]
    if "stack" in sc.combine:
        found += [Candidate(f"stack {d}", "stack", d) for d in sc.detectors]
    return found


def evaluate_candidates(cfg: Config, parts: list[FoldParts]) -> list[Candidate]:
    from netad.metrics import compute_metrics

    found = candidates_of(cfg)
    for c in found:
        scored = candidate_scores(cfg, parts, c)
        c.folds = [dict(_held_out(s, p.eval_y, thr), fold=p.fold.fold) for (s, thr), p in zip(scored, parts)]
        c.summary = summarize(c.folds, TABLE_METRICS + ["detection_at_1pct_fpr"])
        pooled = np.concatenate([s for s, _ in scored])
        c.auroc_out_of_fold = compute_metrics(pooled, np.concatenate([p.eval_y for p in parts]), 0.5)["auroc"]
        if c.rule == "stack":
            c.stack_weights = fit_stack(parts, c.detector)
    return found


def best_candidate(candidates: list[Candidate], metric: str) -> Candidate:
    best = candidates[0]
    for c in candidates[1:]:
        if c.summary[metric]["mean"] > best.summary[metric]["mean"]:
            best = c
    return best


def chosen_config(request: Config, chosen: Candidate) -> Config:
    """The request's config with the chosen model."""
    out = request.model_copy(deep=True)
    if chosen.rule == "classifier":
        out.model.type = "classifier"
        return out
    out.model.type = "hybrid"
    out.hybrid.detector = chosen.detector
    out.hybrid.params = dict(request.detectors.params.get(chosen.detector, {}))
    out.hybrid.stack_weights = chosen.stack_weights  # before the rule: a stack rule needs its weights
    out.hybrid.combine = "or" if chosen.rule == "or" else "stack"
    if chosen.budget is not None:
        out.hybrid.novelty_fpr = chosen.budget
    return out


# ------------------------------------------------------------------ output
def format_selection(result: SelectionResult) -> str:
    metric = result.metric
    columns = [metric] + [c for c in SHOWN if c != metric]
    width = max(len(c.name) for c in result.candidates) + 2
    head = f"  {'candidate':<{width}}" + "".join(f"{c:>23}" for c in columns) + f"{'auroc out of fold':>19}"
    lines = [f"Selection by {result.strategy} CV ({len(result.cv.folds)} folds, held-out attack types unseen by "
             f"their models), by the fold mean of {metric}; the test hold-out was not read:", head]
    for c in sorted(result.candidates, key=lambda c: -c.summary[metric]["mean"]):
        mark = "*" if c is result.chosen else " "
        cells = "".join(f"{c.summary[k]['mean']:>14.3f} ± {c.summary[k]['std']:.3f}" for k in columns)
        lines.append(f"{mark} {c.name:<{width}}{cells}{c.auroc_out_of_fold:>19.3f}")
    chosen = result.chosen
    lines.append(f"Chosen: {chosen.name}"
                 + (f" (weights logit {chosen.stack_weights['logit']:.3f}, novelty {chosen.stack_weights['novelty']:.3f},"
                    f" bias {chosen.stack_weights['bias']:.3f}, learned on every fold's held-out rows)"
                    if chosen.stack_weights else ""))
    for key in ("selection_csv", "selected_config", "written_config", "evaluation_card"):
        if key in result.files:
            lines.append(f"  {key.replace('_', ' ')}: {result.files[key]}")
    if result.final_checkpoint:
        lines.append(f"Final model ({chosen.name}, trained on the non-test rows): {result.final_checkpoint}")
    return "\n".join(lines)


def _table(candidates: list[Candidate], metric: str) -> pd.DataFrame:
    rows = []
    for c in candidates:
        row: dict[str, Any] = {"candidate": c.name, "rule": c.rule, "detector": c.detector, "budget": c.budget}
        for k in dict.fromkeys([metric, *TABLE_METRICS, "detection_at_1pct_fpr"]):
            row[f"{k}_mean"], row[f"{k}_std"] = c.summary[k]["mean"], c.summary[k]["std"]
        row["auroc_out_of_fold"] = c.auroc_out_of_fold
        rows.append(row)
    return pd.DataFrame(rows)


def _non_default(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(defaults.get(key), dict) and value:
            inner = _non_default(value, defaults[key])
            if inner:
                out[key] = inner
        elif key not in defaults or value != defaults[key]:
            out[key] = value
    return out


def config_text(cfg: Config, result: SelectionResult, data_sha256: str) -> str:
    """YAML of the chosen model's config (the keys that differ from the defaults), headed by how it was chosen."""
    metric = result.metric
    head = [f"# Chosen by `python train.py --select` (netad), run {result.run_dir.name}: {result.chosen.name}.",
            f"# {result.strategy} CV on {cfg.data.data_path} (sha256 {data_sha256[:16]}...), the test hold-out "
            "set aside and never read;", f"# each candidate's fold mean of {metric} on held-out attack types "
            "its models never saw:"]
    for c in sorted(result.candidates, key=lambda c: -c.summary[metric]["mean"]):
        head.append(f"#   {'*' if c is result.chosen else ' '} {c.name:<18} {c.summary[metric]['mean']:.3f} ± "
                    f"{c.summary[metric]['std']:.3f}")
    head.append("# Retrain: python train.py --use-cv --config <this file>")
    body = _non_default(cfg.to_dict(), Config().to_dict())
    body.setdefault("model", {})["type"] = cfg.model.type
    return "\n".join(head) + "\n" + yaml.safe_dump(body, sort_keys=False)


def _write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path) as tmp:
        tmp.write_text(text)
    return str(path)


def selection_evidence(result: SelectionResult, parts: list[FoldParts], n_test: int) -> dict[str, Any]:
    return {"strategy": result.strategy, "metric": result.metric, "chosen": result.chosen.name,
            "stack_weights": result.chosen.stack_weights,
            "rows": {"test_hold_out": f"{n_test} rows, never read",
                     "folds": [{"fold": p.fold.fold, "detectors_fitted_on": f"{int((p.fold.train.size))} training rows "
                                "(their normal rows)", "thresholds_on": f"{p.fold.val.size} validation rows",
                                "measured_on": f"{p.fold.eval.size} held-out rows"} for p in parts],
                     "stack": "weights for fold k learned on the other folds' held-out rows; the final weights on "
                              "every fold's held-out rows"},
            "candidates": [c.to_json() for c in result.candidates]}


# --------------------------------------------------------------------- run
def run_select(cfg: Optional[Config], *, run_name: Optional[str] = None, resume: Optional[str | Path] = None,
               quiet: bool = False, write_config: Optional[str | Path] = None) -> Optional[SelectionResult]:
    """Choose the hybrid's detector, budget and rule on the training file (see the module), then train the
    final model with them; ``write_config`` also writes the chosen config there. None in DDP processes but
    the first."""
    if resume:
        run, _ = find_run(resume)
        if not (run.path / REQUEST).is_file():
            raise UserError(f"{run.path} is not a train.py --select run (no {REQUEST}); resume it without --select")
        from netad.config import config_from_dict

        request = config_from_dict(read_run_file(run.path / REQUEST, "yaml"), str(run.path / REQUEST))
        cv = run_cv(None, resume=run.path, quiet=quiet)
    else:
        if cfg is None:
            raise TypeError("a new selection needs a config (or resume=PATH)")
        request, search = cfg, search_config(cfg)
        name = choose_run_name(run_name, "select")
        run_path = Path(search.checkpoint.save_dir) / name
        if not (run_path / REQUEST).is_file():
            open_run(search, name)  # run_cv below joins it
            _write(run_path / REQUEST, yaml.safe_dump(request.to_dict(), sort_keys=False))
        cv = run_cv(search, run_name=name, quiet=quiet)
    if cv is None:
        return None
    t = Training.open(None, cross_validate=True, resume=cv.run_dir, gather=True, quiet=quiet)
    t.say(f"Selection: {len(candidates_of(t.cfg))} candidates on {len(t.splits.folds)} {t.cfg.cross_validation.strategy}"
          f" folds")
    with limit_threads(t.cfg.trainer.num_threads):
        parts = [fold_parts(t, f, t.run.load_result(f"fold_{f.fold}").checkpoint) for f in t.splits.folds]
        candidates = evaluate_candidates(t.cfg, parts)
    metric = t.cfg.selection.metric
    chosen = best_candidate(candidates, metric)
    final_cfg = chosen_config(request, chosen)
    result = SelectionResult(t.run.path, t.cfg.cross_validation.strategy, metric, candidates, chosen, final_cfg, cv)
    digest = t.metadata.get("data_sha256", "")
    result.files["selection_csv"] = str(t.run.path / "selection.csv")
    with atomic_target(t.run.path / "selection.csv") as tmp:
        _table(candidates, metric).to_csv(tmp, index=False)
    write_json(t.run.path / "selection.json", selection_evidence(result, parts, len(t.splits.test)))
    text = config_text(final_cfg, result, digest)
    result.files["selected_config"] = _write(t.run.path / "selected_config.yaml", text)
    if write_config:
        result.files["written_config"] = _write(Path(write_config), text)
    t.say(f"Selected {chosen.name}: {metric} {chosen.summary[metric]['mean']:.3f} ± {chosen.summary[metric]['std']:.3f}")

    cvc = t.cfg.cross_validation
    fit_rows, val_rows = split_val(t.splits.dev, t.table.labels, t.cfg.data.val_size, cvc.random_state)
    t.say(f"Final model ({chosen.name}) on all {len(t.splits.dev)} non-test rows")
    with t.active():
        verdict = (f"chosen by train.py --select among {len(candidates)} candidates: {metric} "
                   f"{chosen.summary[metric]['mean']:.3f} ± {chosen.summary[metric]['std']:.3f} on {result.strategy} "
                   f"folds (held-out attack types unseen by their models). The classifier alone: "
                   f"{cv.verdict['message']}")
        final = t.fit("final", fit_rows, val_rows, seed=t.cfg.training.seed, cfg=final_cfg,
                      meta={"cv_summary": chosen.summary, "cv_verdict": verdict,
                            "selection": {"chosen": chosen.name, "metric": metric, "strategy": result.strategy}})
        result.final_checkpoint = t.publish(final)
    card = t.run.path / "evaluation_card.md"
    result.files["evaluation_card"] = _write(card, evaluation_card(t.cfg, t.table, t.splits, cv, digest or None,
                                                                   selection=result))
    return result
