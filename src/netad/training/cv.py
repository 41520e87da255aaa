"""Stratified k-fold cross-validation with a manifest, resume, baselines and a final model.

Run folder ``<checkpoint.save_dir>/<run>/``:
- ``config.yaml``   the exact config of the run (a resume reads it back);
- ``splits.json``   test hold-out and every fold's train / val / eval row indices;
- ``fold_<k>/``     that fold's checkpoints (best, last, every N epochs) and ``result.json``;
- ``manifest.json`` which folds are finished (derived from the ``result.json`` files);
- ``baselines/``    label-permutation models, one per fold (a ``--fold K`` job trains fold K's);
- ``final/``        the model trained on all non-test rows, copied to ``best_model.ckpt``;
- ``cv_results.json``, ``cv_results.csv``, ``oof_predictions.csv``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
import yaml

from netad.io import atomic_target, write_text_atomic
from netad.config import Config, config_from_dict
from netad.data.loading import LabelledTable, file_digest, load_table
from netad.data.splits import FoldSplit, make_folds, split_test, split_val
from netad.errors import RunInterrupted, UserError
from netad.metrics import (
    CHANCE_P, TABLE_METRICS, auroc_vs_chance, format_p, held_out_metrics, operating_point, summarize,
)
from netad.models.checkpoint import read_checkpoint
from netad.training.fit import FitResult, fit_split
from netad.training.hardware import is_primary_process, launched_world_size, trainer_arguments
from netad.tracking.loggers import log_wandb_summary

Say = Callable[[str], None]


def _write_json(path: Path, data: Any, compact: bool = False) -> None:
    """Indented for people; ``compact`` for files of long index and score lists (json indents those with its
    pure-Python encoder, one line per number: several times slower and larger)."""
    layout: dict[str, Any] = {"separators": (",", ":")} if compact else {"indent": 2}
    write_text_atomic(path, json.dumps(data, default=float, **layout))


def read_run_file(path: Path, kind: str) -> Any:
    """A run folder's JSON or YAML file; a damaged one (cut short, edited, not UTF-8) is one line."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if kind == "json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is damaged ({first}); it is not the file netad wrote") from None
    if kind == "yaml" and not isinstance(data, dict):
        raise UserError(f"{path} is damaged (not a mapping of config sections); it is not the file netad wrote")
    return data


class FoldLock:
    """Only one process trains a given fold: ``<fold>/.lock`` holds the owner's pid (stale locks are taken over)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.path, self.name = folder / ".lock", name

    def __enter__(self) -> "FoldLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    owner = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    owner = 0
                if owner and _alive(owner):
                    raise UserError(f"{self.name} is being trained by another process (pid {owner}); "
                                    f"wait for it, or delete {self.path} if that process is gone") from None
                self.path.unlink(missing_ok=True)  # its owner died: take it over
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            return self
        raise UserError(f"could not lock {self.path}")

    def __exit__(self, *exc: Any) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------- run folder
@dataclass
class RunFolder:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def fold_dir(self, k: int) -> Path:
        return self.path / f"fold_{k}"

    def result_path(self, name: str) -> Path:
        return self.path / name / "result.json"

    def finished(self) -> list[str]:
        return sorted(p.parent.relative_to(self.path).as_posix() for p in self.path.glob("**/result.json"))

    def load_result(self, name: str) -> Optional[FitResult]:
        path = self.result_path(name)
        if not path.is_file():
            return None
        saved = read_run_file(path, "json")
        try:
            return FitResult(**saved)
        except TypeError:
            raise UserError(f"{path} is damaged (not a result netad wrote); delete it to train {name} again") from None

    def save_result(self, result: FitResult) -> None:
        _write_json(self.result_path(result.name), result.to_json(), compact=True)
        _write_json(self.path / "manifest.json", {"run": self.name, "finished": self.finished(),
                                                  "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})

    def last_checkpoint(self, name: str) -> Optional[Path]:
        last = self.path / name / "last.ckpt"
        if not last.is_file():
            return None
        try:  # a truncated or foreign file: one clear line, not a traceback from inside Lightning
            read_checkpoint(last)
        except UserError as exc:
            raise UserError(f"{exc}; delete it to train {name} again from the start") from None
        return last


def new_run_name(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


# sections that may differ between jobs of one run (where logs go, which device) without changing results
_RUN_NEUTRAL = ("logging", "trainer", "huggingface", "detectors")


def _config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        if not prefix and key in _RUN_NEUTRAL:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def open_run(cfg: Config, run_name: str) -> RunFolder:
    """Create the run folder, or join an existing one (parallel --fold jobs) if its config is the same."""
    run = RunFolder(Path(cfg.checkpoint.save_dir) / run_name)
    snapshot = run.path / "config.yaml"
    if snapshot.is_file():
        saved = config_from_dict(read_run_file(snapshot, "yaml"), str(snapshot)).to_dict()
        differ = _config_differences(saved, cfg.to_dict())
        if differ:
            raise UserError(f"run '{run_name}' already exists with a different config (differs in: "
                            f"{', '.join(differ[:5])}); use --resume {run.path} or a new --run-name")
        return run
    run.path.mkdir(parents=True, exist_ok=True)
    write_text_atomic(snapshot, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return run


def find_run(path: str | Path) -> tuple[RunFolder, Config]:
    """The run folder holding ``path`` (the folder itself or a checkpoint inside it) and its config."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"--resume: no such run folder or checkpoint: {path}")
    for candidate in [path, *path.parents] if path.is_dir() else list(path.parents):
        if (candidate / "config.yaml").is_file() and (candidate / "splits.json").is_file():
            raw = read_run_file(candidate / "config.yaml", "yaml")
            return RunFolder(candidate), config_from_dict(raw, str(candidate / "config.yaml"))
    raise UserError(f"--resume: {path} is not inside a netad run folder (no config.yaml and splits.json)")


def run_metadata(cfg: Config, run: RunFolder, table: LabelledTable, test: np.ndarray) -> dict[str, Any]:
    """What every checkpoint of a run carries: where it came from and which rows are its test set."""
    return {"run_dir": str(run.path), "run_name": run.name, "data_path": table.source,
            "data_sha256": file_digest(table.source), "data_rows": len(table),
            "label_column": cfg.data.label_column, "normal_value": cfg.data.normal_value,
            # one tensor, not thousands of pickled ints: this is written with every checkpoint
            "test_indices": torch.from_numpy(test.astype(np.int64)), "config": cfg.to_dict()}


# ---------------------------------------------------------------------- splits
def compute_splits(cfg: Config, table: LabelledTable) -> tuple[np.ndarray, np.ndarray, list[FoldSplit]]:
    """Test hold-out and folds; raises UserError (before anything is written) when they cannot be made."""
    cv = cfg.cross_validation
    dev, test = split_test(table.labels, cfg.data.test_size, cv.random_state)
    folds = make_folds(dev, table.labels, cv.n_splits, cv.shuffle, cv.random_state, cv.stratify, cfg.data.val_size)
    return dev, test, folds


def save_splits(run: RunFolder, table: LabelledTable, dev: np.ndarray, test: np.ndarray,
                folds: list[FoldSplit], **extra: np.ndarray) -> None:
    _write_json(run.path / "splits.json", {"n_rows": len(table), "data_path": table.source,
                                           "data_sha256": file_digest(table.source), "dev": dev.tolist(),
                                           "test": test.tolist(), "folds": [f.to_json() for f in folds],
                                           **{k: v.tolist() for k, v in extra.items()}}, compact=True)


def load_splits(run: RunFolder, table: LabelledTable) -> dict[str, Any]:
    """The splits a run was made with; a resume must use the very same rows of the very same file."""
    path = run.path / "splits.json"
    saved = _splits_file(run)
    if saved.get("data_sha256") not in (None, file_digest(table.source)) or saved["n_rows"] != len(table):
        raise UserError(f"{table.source} has changed since run '{run.name}' was made on it: "
                        f"its splits no longer point at the same rows; start a new run")
    try:
        for key in ("dev", "test", "train", "val"):
            if key in saved:
                saved[key] = np.asarray(saved[key], dtype=np.int64)
        saved["folds"] = [FoldSplit(int(f["fold"]), *(np.asarray(f[p], dtype=np.int64) for p in ("train", "val", "eval")))
                          for f in saved["folds"]]
        parts = [saved[k] for k in ("dev", "test", "train", "val") if k in saved]
        parts += [getattr(f, p) for f in saved["folds"] for p in ("train", "val", "eval")]
        if any(len(a) and (a.min() < 0 or a.max() >= len(table)) for a in parts):
            raise ValueError("row numbers outside the data")
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path} is damaged ({exc}): the run's splits are lost; start a new run") from None
    return saved


def _splits_file(run: RunFolder) -> dict[str, Any]:
    path = run.path / "splits.json"
    saved = read_run_file(path, "json")
    if not isinstance(saved, dict) or not {"n_rows", "folds", "dev", "test"} <= set(saved):
        raise UserError(f"{path} is damaged (keys missing): the run's splits are lost; start a new run")
    return saved


def is_cv_run(run: RunFolder) -> bool:
    return bool(_splits_file(run)["folds"])


# --------------------------------------------------------------------- results
@dataclass
class CVResult:
    run_dir: Path
    folds: list[dict[str, Any]]
    summary: dict[str, dict[str, float]]
    baselines: dict[str, Any]
    verdict: dict[str, Any]
    final_checkpoint: Optional[str] = None
    files: dict[str, str] = field(default_factory=dict)


def _fold_row(result: FitResult, fold: FoldSplit) -> dict[str, Any]:
    row = {"fold": fold.fold, "n_eval": int(len(fold.eval)), "threshold": result.threshold,
           "best_epoch": result.best_epoch}
    row.update({m: result.eval_metrics[m] for m in TABLE_METRICS})
    return row


def _majority_row(table: LabelledTable, fold: FoldSplit) -> dict[str, float]:
    """Always predict the majority class of the training rows (a constant score)."""
    y_train, y_eval = table.labels[fold.train], table.labels[fold.eval]
    majority = int(np.mean(y_train) > 0.5)
    scores = np.full(len(y_eval), float(np.mean(y_train)))
    threshold = 0.0 if majority else 1.0  # everything flagged, or nothing
    row = held_out_metrics(scores, y_eval, threshold)
    return row


def _verdict(model_auroc: dict[str, float], perm_test: dict[str, float], perm_summary: Optional[dict[str, Any]],
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
    verdict = {"beats_chance": bool(significant and above_shuffled), "message": text, "permutation_test": perm_test,
               "decided_by": "Mann-Whitney test of the out-of-fold ROC AUC, and the mean of the label-permutation "
                             "models", "operating_point": operating_point(
                   fpr_mean, "each fold's validation-chosen threshold", "the model flags on average", threshold_method)}
    if perm_summary is not None:
        verdict["permutation_models"] = permutation_note(perm_summary["auroc"], perm_values or [])
    return verdict


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


def _write_tables(run: RunFolder, folds: list[dict[str, Any]], summary: dict[str, dict[str, float]],
                  oof: list[dict[str, Any]]) -> dict[str, str]:
    """The fold table and out-of-fold predictions, each written whole or not at all (a full disk)."""
    csv_path = run.path / "cv_results.csv"
    columns = list(folds[0].keys())
    with atomic_target(csv_path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(folds)
        for stat in ("mean", "std"):
            writer.writerow({c: (stat if c == "fold" else summary[c][stat] if c in summary else "") for c in columns})
    oof_path = run.path / "oof_predictions.csv"
    with atomic_target(oof_path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["row", "fold", "label", "score", "prediction"])
        writer.writeheader()
        writer.writerows(oof)
    return {"cv_results_csv": str(csv_path), "oof_predictions": str(oof_path)}


def format_table(result: CVResult) -> str:
    cols = ["fold"] + TABLE_METRICS + ["threshold"]
    lines = ["  ".join(f"{c:>9}" for c in cols)]
    for row in result.folds:
        lines.append("  ".join(f"{row[c]:>9}" if c == "fold" else f"{row[c]:>9.3f}" for c in cols))
    lines.append("  ".join(f"{'mean':>9}" if c == "fold" else f"{result.summary[c]['mean']:>9.3f}" for c in cols))
    lines.append("  ".join(f"{'± std':>9}" if c == "fold" else f"{result.summary[c]['std']:>9.3f}" for c in cols))
    for name, base in (("majority", result.baselines.get("majority")), ("shuffled", result.baselines.get("permutation"))):
        if not isinstance(base, dict) or "summary" not in base:
            continue
        s = base["summary"]
        lines.append("  ".join(f"{name[:9]:>9}" if c == "fold" else (f"{s[c]['mean']:>9.3f}" if c in s else f"{'-':>9}")
                               for c in cols))
    return "\n".join(lines)


# ------------------------------------------------------------------------ main
#: the run name the first process of a DDP job hands to the processes Lightning starts for it
RUN_NAME_ENV = "NETAD_RUN_NAME"


@contextmanager
def _shared_run_name(name: str) -> Iterator[None]:
    """While a run trains, processes started for it (Lightning's DDP launcher) inherit its name."""
    before = os.environ.get(RUN_NAME_ENV)
    os.environ[RUN_NAME_ENV] = name
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RUN_NAME_ENV, None)
        else:
            os.environ[RUN_NAME_ENV] = before


@contextmanager
def _resumable(run: RunFolder) -> Iterator[None]:
    """Ctrl-C or SIGTERM inside a run: an interrupt that names the folder ``--resume`` continues."""
    try:
        yield
    except RunInterrupted:
        raise
    except KeyboardInterrupt as exc:
        raise RunInterrupted(run.path) from exc


def _run_name(given: Optional[str], prefix: str) -> str:
    name = given or os.environ.get(RUN_NAME_ENV)
    if name:
        return name
    if launched_world_size() > 1:  # torchrun / srun start every process at once: they cannot agree on a time stamp
        raise UserError("a distributed launch (torchrun, srun) needs --run-name NAME, the same for every process")
    return new_run_name(prefix)


def check_trainer(cfg: Config) -> None:
    """A GPU that is not there, or 16-mixed on the CPU: refused before a run writes anything."""
    trainer_arguments(cfg.trainer, warn=lambda _msg: None)  # fit_split says the notes, once


def fold_job_names(cfg: Config, fold: int) -> list[str]:
    """What a ``--fold K`` job trains: the fold's model and, when configured, its label-permutation baseline."""
    names = [f"fold_{fold}"]
    if cfg.cross_validation.permutation_baseline:
        names.append(f"baselines/permutation_fold_{fold}")
    return names


def _permuted_table(cfg: Config, table: LabelledTable, fold: FoldSplit) -> LabelledTable:
    """The fold's training and validation labels shuffled (a pure function of the split seed and the fold)."""
    rng = np.random.default_rng(cfg.cross_validation.random_state + 7919 * (fold.fold + 1))
    labels = table.labels.copy()
    fit_rows = np.concatenate([fold.train, fold.val])
    labels[fit_rows] = rng.permutation(labels[fit_rows])  # eval rows keep their true labels
    return LabelledTable(table.features, labels, table.source)


def run_cv(
    cfg: Optional[Config],
    *,
    run_name: Optional[str] = None,
    resume: Optional[str | Path] = None,
    only_fold: Optional[int] = None,
    gather: bool = False,
    quiet: bool = False,
    say: Optional[Say] = None,
    extra_callbacks: Optional[Callable[[str], list]] = None,
    announce: Optional[Say] = None,
) -> Optional[CVResult]:
    """Cross-validate ``cfg``; returns the results (None when ``only_fold`` ran a single fold, and in every
    process of a DDP job but the first).

    ``only_fold=K`` trains fold K and its permutation baseline only (a job of a job array);
    ``gather=True`` summarises a run whose folds those jobs trained: it trains no fold (a missing one is
    an error), only the final model, and writes what a whole run writes.
    """
    primary = is_primary_process()  # in a DDP job every process runs this; only the first writes files
    say = (say or (lambda _msg: None)) if primary else (lambda _msg: None)
    announce = (announce or say) if primary else say  # where the run lives: said even under --quiet
    quiet = quiet or not primary
    if gather and only_fold is not None:
        raise UserError("--gather summarises the folds that --fold jobs trained; give one of them, not both")
    if resume:
        run, cfg = find_run(resume)
        if not is_cv_run(run):
            raise UserError(f"{run.path} is a single train/validation run, not a cross-validation run")
        check_trainer(cfg)
        if not gather:
            announce(f"Resuming run {run.path} (finished: {', '.join(run.finished()) or 'nothing yet'})")
        table = load_table(cfg.data)
        saved = load_splits(run, table)
        dev, test, folds = saved["dev"], saved["test"], saved["folds"]
    else:
        check_trainer(cfg)
        table = load_table(cfg.data)  # bad data or impossible splits stop here, before anything is written
        dev, test, folds = compute_splits(cfg, table)
        if only_fold is not None and not 0 <= only_fold < len(folds):
            raise UserError(f"--fold {only_fold}: the run has folds 0 to {len(folds) - 1}")
        name = _run_name(run_name, "cv")
        existing = RunFolder(Path(cfg.checkpoint.save_dir) / name)
        if gather and not (existing.path / "splits.json").is_file():
            raise UserError(f"--gather: there is no run '{name}' in {cfg.checkpoint.save_dir} "
                            f"(its --fold jobs write {existing.path})")
        run = open_run(cfg, name) if primary else existing
        if (run.path / "splits.json").is_file():  # --fold jobs of one run share its splits
            if not is_cv_run(run):
                raise UserError(f"run '{run.name}' is a single train/validation run: pick a new --run-name")
            saved = load_splits(run, table)
            dev, test, folds = saved["dev"], saved["test"], saved["folds"]
        elif primary:
            save_splits(run, table, dev, test, folds)
        announce(f"Run folder: {run.path}")
    if only_fold is not None and not 0 <= only_fold < len(folds):
        raise UserError(f"--fold {only_fold}: the run has folds 0 to {len(folds) - 1}")
    if gather:
        missing = [f.fold for f in folds if any(run.load_result(n) is None for n in fold_job_names(cfg, f.fold))]
        if missing:
            many = len(missing) > 1
            raise UserError(f"--gather: run '{run.name}' has not finished fold{'s' if many else ''} "
                            f"{', '.join(map(str, missing))} (train.py --use-cv --run-name {run.name} --fold "
                            f"{'K trains fold K' if many else f'{missing[0]} trains it'}; without --gather this "
                            f"command trains {'them' if many else 'it'} itself)")
        say(f"Gathering run {run.path}: {len(folds)} folds finished")
    base_meta = run_metadata(cfg, run, table, test)

    def fit_or_resume(name: str, train, val, eval_idx, seed, log=True, table_=table, meta=None) -> FitResult:
        done = run.load_result(name)
        if done is not None:
            say(f"{name}: finished earlier, skipped")
            return done
        # the processes of a DDP job train the same fit together: only the first one locks and writes
        with FoldLock(run.path / name, name) if primary else nullcontext():
            done = run.load_result(name) if primary else None  # finished by another job while we waited for the data
            if done is not None:
                return done
            last = run.last_checkpoint(name)
            if last is not None:
                say(f"{name}: continuing from {last}")
            result = fit_split(cfg, table_, train, val, run.path / name, name=name, run_name=run.name,
                               eval_idx=eval_idx, seed=seed, resume_from=last, log=log, quiet=quiet,
                               metadata=dict(base_meta, **(meta or {})),
                               extra_callbacks=extra_callbacks(name) if extra_callbacks else None)
            if primary:
                run.save_result(result)
        return result

    def permutation_fit(f: FoldSplit) -> FitResult:
        say(f"Label-permutation baseline {f.fold + 1}/{len(folds)}")
        return fit_or_resume(f"baselines/permutation_fold_{f.fold}", f.train, f.val, f.eval,
                             cfg.training.seed + f.fold, log=False, table_=_permuted_table(cfg, table, f))

    with _shared_run_name(run.name), _resumable(run):
        results: list[FitResult] = []
        for fold in folds:
            if only_fold is not None and fold.fold != only_fold:
                continue
            say(f"Fold {fold.fold + 1}/{len(folds)}: {len(fold.train)} train, {len(fold.val)} validation, "
                f"{len(fold.eval)} held-out rows")
            results.append(fit_or_resume(f"fold_{fold.fold}", fold.train, fold.val, fold.eval,
                                         cfg.training.seed + fold.fold, meta={"fold": fold.fold}))
        if only_fold is not None:
            if cfg.cross_validation.permutation_baseline:  # its share of the baselines, so the gather step trains none
                permutation_fit(folds[only_fold])
            say(f"fold_{only_fold} done: ROC AUC {results[0].eval_metrics['auroc']:.3f}; once every fold is "
                f"finished, summarise with: train.py --use-cv --run-name {run.name} --gather")
            return None
        return _finish_cv(cfg, run, table, dev, test, folds, results, fit_or_resume, permutation_fit, primary, say)


def _finish_cv(cfg: Config, run: RunFolder, table: LabelledTable, dev: np.ndarray, test: np.ndarray,
               folds: list[FoldSplit], results: list[FitResult], fit_or_resume: Callable[..., FitResult],
               permutation_fit: Callable[[FoldSplit], FitResult], primary: bool, say: Say) -> Optional[CVResult]:
    """Fold table, baselines, verdict, final model and the result files of a run whose folds are trained."""
    rows = [_fold_row(r, f) for r, f in zip(results, folds)]
    summary = summarize(rows, TABLE_METRICS + ["threshold"])
    oof = []
    for r, f in zip(results, folds):
        for row, score in zip(f.eval, r.eval_scores):
            oof.append({"row": int(row), "fold": f.fold, "label": int(table.labels[row]), "score": score,
                        "prediction": int(score >= r.threshold)})
    oof_scores = np.array([o["score"] for o in oof])
    oof_labels = np.array([o["label"] for o in oof])

    # ---- baselines on the same folds
    majority_rows = [_majority_row(table, f) for f in folds]
    baselines: dict[str, Any] = {"majority": {"folds": majority_rows, "summary": summarize(majority_rows, TABLE_METRICS)}}
    perm_summary = None
    if cfg.cross_validation.permutation_baseline:
        perm_rows = []
        for f in folds:
            res = permutation_fit(f)
            perm_rows.append({m: res.eval_metrics[m] for m in TABLE_METRICS})
        perm_summary = summarize(perm_rows, TABLE_METRICS)
        baselines["permutation"] = {"folds": perm_rows, "summary": perm_summary}
    perm_test = auroc_vs_chance(oof_scores, oof_labels)
    perm_values = [row["auroc"] for row in baselines["permutation"]["folds"]] if perm_summary else []
    verdict = _verdict(summary["auroc"], perm_test, perm_summary, summary["accuracy"]["mean"],
                       baselines["majority"]["summary"]["accuracy"]["mean"], summary["fpr"]["mean"], perm_values,
                       cfg.threshold.method)

    cv_result = CVResult(run.path, rows, summary, baselines, verdict)
    if primary:
        cv_result.files = _write_tables(run, rows, summary, oof)

    # ---- final model on all non-test rows
    if cfg.cross_validation.train_final_model:
        say(f"Final model on all {len(dev)} non-test rows")
        train, val = split_val(dev, table.labels, cfg.data.val_size, cfg.cross_validation.random_state)
        final = fit_or_resume("final", train, val, None, cfg.training.seed,
                              meta={"cv_summary": summary, "cv_verdict": verdict["message"]})
        if primary:
            cv_result.final_checkpoint = publish_best(cfg, Path(final.checkpoint))
    if not primary:
        return None

    json_path = run.path / "cv_results.json"
    cv_result.files["cv_results_json"] = str(json_path)
    _write_json(json_path, {"run": run.name, "folds": rows, "summary": summary, "baselines": baselines,
                            "verdict": verdict, "n_rows": len(table), "n_test_rows": int(len(test)),
                            "final_checkpoint": cv_result.final_checkpoint, "files": cv_result.files})
    wandb_dir = log_wandb_summary(cfg, run.name, summary, rows)
    if wandb_dir:
        cv_result.files["wandb_summary"] = wandb_dir
    return cv_result


def publish_best(cfg: Config, checkpoint: Path) -> str:
    """Copy a run's chosen checkpoint to ``<save_dir>/best_model.ckpt`` (the default for test/assess/upload)."""
    target = Path(cfg.checkpoint.save_dir) / "best_model.ckpt"
    with atomic_target(target) as tmp:
        shutil.copyfile(checkpoint, tmp)
    return str(target)


def run_single(cfg: Optional[Config], *, run_name: Optional[str] = None, resume: Optional[str | Path] = None,
               quiet: bool = False, say: Optional[Say] = None, announce: Optional[Say] = None) -> Optional[FitResult]:
    """One stratified train/validation split of the non-test rows; best checkpoint -> best_model.ckpt.
    (In a DDP job every process trains; the first one writes the files and the others return None.)"""
    primary = is_primary_process()
    say = (say or (lambda _msg: None)) if primary else (lambda _msg: None)
    announce = (announce or say) if primary else say
    quiet = quiet or not primary
    if resume:
        run, cfg = find_run(resume)
        if is_cv_run(run):
            raise UserError(f"{run.path} is a cross-validation run: resume it with --use-cv")
        check_trainer(cfg)
        table = load_table(cfg.data)
        saved = load_splits(run, table)
        test, train, val = saved["test"], saved["train"], saved["val"]
    else:
        check_trainer(cfg)
        table = load_table(cfg.data)  # bad data stops here, before anything is written
        dev, test = split_test(table.labels, cfg.data.test_size, cfg.cross_validation.random_state)
        train, val = split_val(dev, table.labels, cfg.data.val_size, cfg.cross_validation.random_state)
        name = _run_name(run_name, "single")
        run = open_run(cfg, name) if primary else RunFolder(Path(cfg.checkpoint.save_dir) / name)
        if (run.path / "splits.json").is_file() and is_cv_run(run):
            raise UserError(f"run '{run.name}' is a cross-validation run: use --use-cv, or a new --run-name")
        if primary:
            save_splits(run, table, dev, test, [], train=train, val=val)
        announce(f"Run folder: {run.path}")
    done = run.load_result("single")
    if done is None:
        last = run.last_checkpoint("single")
        say(f"Training on {len(train)} rows, validating on {len(val)} ({len(test)} test rows held out)")
        with _shared_run_name(run.name), _resumable(run), \
                (FoldLock(run.path / "single", "single") if primary else nullcontext()):
            done = fit_split(cfg, table, train, val, run.path / "single", name="single", run_name=run.name,
                             resume_from=last, quiet=quiet, metadata=run_metadata(cfg, run, table, test))
            if primary:
                run.save_result(done)
    if not primary:
        return None
    publish_best(cfg, Path(done.checkpoint))
    return done
