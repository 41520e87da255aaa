"""compare.py: the classifier and every detector on the same CV folds, as a leaderboard.

Each fold: the preprocessing is fitted on the fold's training rows; unsupervised detectors fit
on the normal training rows; the classifier is the model train.py trains for that fold
(:func:`~netad.training.fit.fit_split`, its checkpoints under the output folder) and scores raw rows
through :class:`~netad.inference.NetadPredictor`; every threshold is chosen on the fold's validation
rows; metrics come from the fold's held-out rows (and, with ``test_data``, from an external labelled
file scored by every fold's model).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import numpy as np

from netad.config import Config
from netad.data.loading import check_columns, load_table
from netad.data.preprocessing import TabularPreprocessor, infer_kinds
from netad.errors import UserError
from netad.inference import NetadPredictor
from netad import metrics as M
from netad.training.cv import compute_splits
from netad.training.fit import fit_split, seen_types
from netad.threads import limit_threads

logger = logging.getLogger("netad")
LEADERBOARD_METRICS = ("auroc", "auprc", "f1", "fpr", "accuracy")


@dataclass
class CompareResult:
    output_dir: Path
    leaderboard: list[dict[str, Any]]
    folds: list[dict[str, Any]]
    files: dict[str, str] = field(default_factory=dict)
    logged: dict[str, str] = field(default_factory=dict)
    test_data: Optional[str] = None


def detector_names(cfg: Config, chosen: Optional[list[str]] = None) -> list[str]:
    from netad.detectors import DETECTORS

    names = list(chosen) if chosen else (["classifier"] if cfg.detectors.include_classifier else []) + list(
        cfg.detectors.names)
    unknown = [n for n in names if n != "classifier" and n not in DETECTORS]
    if unknown:
        raise UserError(f"unknown detector(s) {', '.join(unknown)}; choose from classifier, {', '.join(DETECTORS)}")
    if not names:
        raise UserError("no detectors to compare")
    return list(dict.fromkeys(names))


def _new_detector(cfg: Config, name: str, seed: int) -> Any:
    from netad.detectors import make_detector

    return make_detector(name, contamination=cfg.detectors.contamination, random_state=seed,
                         **cfg.detectors.params.get(name, {}))


def run_compare(cfg: Config, *, detectors: Optional[list[str]] = None, test_data: Optional[str | Path] = None,
                output: Optional[str | Path] = None, log: bool = True) -> CompareResult:
    names = detector_names(cfg, detectors)
    table = load_table(cfg.data)
    _, _, folds = compute_splits(cfg, table)
    external = None
    if test_data is not None:
        categorical = [c for c, kind in infer_kinds(table.features).items() if kind == "categorical"]
        ext = load_table(cfg.data, test_data, allow_one_class=True, text_columns=categorical)
        check_columns(list(map(str, table.features.columns)), ext.features, ext.source)
        external = ext
    out = Path(output) if output else Path("reports") / f"compare-{datetime.now():%Y%m%d-%H%M%S}"
    rows: list[dict[str, Any]] = []
    with limit_threads(cfg.trainer.num_threads):
        for fold in folds:
            _compare_fold(cfg, fold, len(folds), table, external, names, rows, out)
    board = leaderboard(rows, names, with_test=external is not None)
    result = CompareResult(out, board, rows, test_data=str(test_data) if test_data else None)
    figure = _write(result, cfg)
    if log:
        result.logged = _publish(cfg, result, figure)
    return result


def _classifier_row(cfg: Config, fold: Any, table: Any, external: Any, out: Path) -> dict[str, Any]:
    """The fold's model as train.py trains it (best epoch, threshold on the validation rows, the configured
    trainer), its held-out rows and the external file scored raw by the predictor of its best checkpoint."""
    start = time.perf_counter()
    fit = fit_split(cfg, table, fold.train, fold.val, out / "classifier" / f"fold_{fold.fold}",
                    name=f"fold_{fold.fold}", run_name=out.name, seed=cfg.training.seed + fold.fold, log=False,
                    quiet=True)
    fit_s = time.perf_counter() - start
    predictor = NetadPredictor.from_checkpoint(fit.checkpoint)
    start = time.perf_counter()
    scores = predictor.score(table.features.iloc[fold.eval])
    score_s = time.perf_counter() - start
    row = {"detector": "classifier", "fold": fold.fold, "threshold": predictor.threshold,
           **M.held_out_metrics(scores, table.labels[fold.eval], predictor.threshold),
           "fit_s": fit_s, "score_s": score_s, "n_eval": int(len(scores))}
    ext_scores = None
    if external is not None:
        ext_scores = predictor.score(external.features)
        row.update({f"test_{k}": v for k, v in M.held_out_metrics(ext_scores, external.labels,
                                                                    predictor.threshold).items()})
    row.update(_type_columns(table, fold, scores >= predictor.threshold, external,
                             None if ext_scores is None else ext_scores >= predictor.threshold))
    return row


def _type_columns(table: Any, fold: Any, flags: np.ndarray, external: Any = None,
                  ext_flags: Optional[np.ndarray] = None) -> dict[str, float]:
    """Recall on the attack types the fold's training and validation rows held, and on the others (with
    ``external``: the same on the external file), or nothing without a type column."""
    if table.types is None:
        return {}
    seen = seen_types(table, np.concatenate([fold.train, fold.val]))
    found = M.type_recall(flags, table.labels[fold.eval], table.types[fold.eval],
                          M.seen_rows(table.types[fold.eval], seen))
    out = {"seen_recall": found["seen_recall"], "unseen_recall": found["unseen_recall"]}
    if external is not None and external.types is not None and ext_flags is not None:
        ext = M.type_recall(ext_flags, external.labels, external.types, M.seen_rows(external.types, seen))
        out.update(test_seen_recall=ext["seen_recall"], test_unseen_recall=ext["unseen_recall"])
    return out


def _compare_fold(cfg: Config, fold: Any, n_folds: int, table: Any, external: Any, names: list[str],
                  rows: list[dict[str, Any]], out: Path) -> None:
    """Every detector on one fold: fitted on its training rows, thresholds on its validation rows."""
    pre = TabularPreprocessor.from_config(cfg.data).fit(table.features.iloc[fold.train])
    X = {part: pre.transform(table.features.iloc[getattr(fold, part)]) for part in ("train", "val", "eval")}
    y = {part: table.labels[getattr(fold, part)] for part in ("train", "val", "eval")}
    X_ext = pre.transform(external.features) if external is not None else None
    for name in names:
        logger.info(f"fold {fold.fold + 1}/{n_folds}: {name}")
        if name == "classifier":
            rows.append(_classifier_row(cfg, fold, table, external, out))
            continue
        det = _new_detector(cfg, name, cfg.training.seed + fold.fold)
        start = time.perf_counter()
        det.fit(X["train"], y["train"])
        fit_s = time.perf_counter() - start
        det.calibrate(X["val"], y["val"], cfg.threshold.method, cfg.threshold.target_fpr)
        start = time.perf_counter()
        scores = det.decision_function(X["eval"])
        score_s = time.perf_counter() - start
        row = {"detector": name, "fold": fold.fold, "threshold": det.threshold_,
               **M.held_out_metrics(scores, y["eval"], det.threshold_),
               "fit_s": fit_s, "score_s": score_s, "n_eval": int(len(scores))}
        ext_scores = None
        if X_ext is not None:
            ext_scores = det.decision_function(X_ext)
            row.update({f"test_{k}": v for k, v in
                        M.held_out_metrics(ext_scores, external.labels, det.threshold_).items()})
        row.update(_type_columns(table, fold, scores >= det.threshold_, external,
                                 None if ext_scores is None else ext_scores >= det.threshold_))
        rows.append(row)


def leaderboard(rows: list[dict[str, Any]], names: list[str], with_test: bool = False) -> list[dict[str, Any]]:
    """Mean and std over folds per detector, best ROC AUC first."""
    keys = list(LEADERBOARD_METRICS) + (["test_" + k for k in LEADERBOARD_METRICS] if with_test else [])
    keys += [k for k in ("seen_recall", "unseen_recall", "test_seen_recall", "test_unseen_recall")
             if rows and k in rows[0]]
    board = []
    for name in names:
        mine = [r for r in rows if r["detector"] == name]
        stats = M.summarize(mine, keys + ["fit_s", "score_s"])
        entry: dict[str, Any] = {"detector": name, "folds": len(mine)}
        for key in keys:
            entry[f"{key}_mean"], entry[f"{key}_std"] = stats[key]["mean"], stats[key]["std"]
        entry["fit_s"], entry["score_s"] = stats["fit_s"]["mean"], stats["score_s"]["mean"]
        board.append(entry)
    return sorted(board, key=lambda e: -np.nan_to_num(e["auroc_mean"], nan=-1.0))


def format_leaderboard(result: CompareResult) -> str:
    with_test = result.test_data is not None
    typed = [k for k in ("unseen_recall", "test_unseen_recall") if result.leaderboard and f"{k}_mean" in
             result.leaderboard[0]]
    head = f"{'detector':<11}" + "".join(f"{k:>16}" for k in ("ROC AUC", "PR AUC", "F1", "FPR")) + \
        (f"{'test ROC AUC':>16}{'test acc':>16}" if with_test else "") + \
        "".join(f"{k.replace('_', ' ').replace('recall', 'rec'):>16}" for k in typed) + f"{'fit s':>8}{'score s':>9}"
    lines = [head]
    for e in result.leaderboard:
        cells = [f"{e[f'{k}_mean']:.3f} ± {e[f'{k}_std']:.3f}" for k in ("auroc", "auprc", "f1", "fpr")]
        if with_test:
            cells += [f"{e[f'test_{k}_mean']:.3f} ± {e[f'test_{k}_std']:.3f}" for k in ("auroc", "accuracy")]
        cells += [f"{e[f'{k}_mean']:.3f} ± {e[f'{k}_std']:.3f}" for k in typed]
        lines.append(f"{e['detector']:<11}" + "".join(f"{c:>16}" for c in cells)
                     + f"{e['fit_s']:>8.2f}{e['score_s']:>9.3f}")
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _write(result: CompareResult, cfg: Config) -> Any:
    """The CSV, JSON and PNG files; returns the bar chart for the loggers."""
    from netad.evaluation import plots

    out = result.output_dir
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "leaderboard.csv", result.leaderboard)
    _write_csv(out / "folds.csv", result.folds)
    fig = plots.leaderboard(result.leaderboard, with_test=result.test_data is not None)
    plots.save_png(fig, out / "leaderboard.png")
    (out / "leaderboard.json").write_text(json.dumps(
        {"data": cfg.data.data_path, "test_data": result.test_data, "n_splits": cfg.cross_validation.n_splits,
         "threshold_method": cfg.threshold.method, "leaderboard": result.leaderboard, "folds": result.folds},
        indent=2, default=float))
    result.files = {k: str(out / f) for k, f in (("leaderboard_csv", "leaderboard.csv"), ("folds_csv", "folds.csv"),
                                                  ("leaderboard_png", "leaderboard.png"),
                                                  ("leaderboard_json", "leaderboard.json"))}
    return fig


def _publish(cfg: Config, result: CompareResult, figure: Any) -> dict[str, str]:
    from netad.tracking.publish import publish

    scalars = {}
    for e in result.leaderboard:
        for key in ("auroc", "auprc", "f1", "fpr") + (("test_auroc", "test_accuracy") if result.test_data else ()):
            scalars[f"Compare/{e['detector']}/{key}_mean"] = e[f"{key}_mean"]
    columns = list(result.leaderboard[0])
    return publish(cfg, kind="compare", name=result.output_dir.name, scalars=scalars,
                   figures={"Compare/leaderboard": figure},
                   tables={"Leaderboard": (columns, [[e[c] for c in columns] for e in result.leaderboard])})
