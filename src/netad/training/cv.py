"""Cross-validation and single-split runs: which fits a run needs, in which order, and what it hands back.

A run (its folder: runs.py) is a set of named fits, each trained once, continued after an interrupt, or
skipped when finished. Cross-validation: ``fold_<k>`` per fold, ``baselines/permutation_fold_<k>`` when
``cross_validation.permutation_baseline`` is on, and ``final`` on all non-test rows; a single train/validation
split is the one fit ``single``. The run's chosen model is copied to ``<save_dir>/best_model.ckpt``.
Progress goes to the ``netad`` logger at INFO; where the run lives to ``netad.run`` (shown under --quiet too).
"""

from __future__ import annotations

import logging
import shutil
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from netad.config import Config
from netad.data.leakage import leakage_findings, streamed_leakage_findings
from netad.data.loading import LabelledTable
from netad.data.streaming import StreamedTable, load_training_data
from netad.data.splits import FoldSplit, make_folds, split_test, split_val
from netad.errors import UserError
from netad.io import atomic_target
from netad.metrics import TABLE_METRICS, summarize
from netad.tracking.loggers import log_wandb_summary
from netad.training.baselines import baselines, judge, permutation_fit_name, permuted_table
from netad.training.card import evaluation_card
from netad.training.fit import FitResult, fit_split
from netad.training.hardware import is_primary_process, trainer_arguments
from netad.training.report import (
    TYPE_COLUMNS, CVResult, SingleResult, fold_row, oof_type_recall, out_of_fold, write_results, write_tables,
    write_type_table,
)
from netad.training.runs import (
    FoldLock, RunFolder, Splits, choose_run_name, find_run, is_cv_run, load_splits, open_run, read_run_file,
    resumable, run_metadata, save_splits, shared_run_name, write_json,
)

log = logging.getLogger("netad")
where = logging.getLogger("netad.run")  # the lines that say where a run lives: shown under --quiet too

#: per fit name, the Lightning callbacks a caller adds (tests: spies, simulated crashes)
ExtraCallbacks = Callable[[str], list]


# ------------------------------------------------------------------ splits
def compute_splits(cfg: Config, table: LabelledTable) -> tuple[np.ndarray, np.ndarray, list[FoldSplit]]:
    """Test hold-out and folds; raises UserError (before anything is written) when they cannot be made."""
    cv = cfg.cross_validation
    dev, test = split_test(table.labels, cfg.data.test_size, cv.random_state)
    folds = make_folds(dev, table.labels, cv.n_splits, cv.shuffle, cv.random_state, cv.stratify, cfg.data.val_size,
                       groups=fold_groups(cfg, table), group_kind="family" if cv.strategy == "by_family" else "attack type")
    return dev, test, folds


def fold_groups(cfg: Config, table: LabelledTable) -> Optional[np.ndarray]:
    """What the by_type / by_family strategies keep together in one fold: each row's attack type or family."""
    strategy = cfg.cross_validation.strategy
    if strategy == "stratified":
        return None
    if table.types is None:  # load_table requires the column for a training file
        raise UserError(f"cross_validation.strategy {strategy} needs data.type_column")
    if strategy == "by_type":
        return table.types
    family_of = cfg.data.family_of
    return np.array([family_of.get(t, t) for t in table.types], dtype=object)


def _single_split(cfg: Config, table: LabelledTable) -> Splits:
    """Test hold-out, then one stratified train/validation split of the rest."""
    seed = cfg.cross_validation.random_state
    dev, test = split_test(table.labels, cfg.data.test_size, seed)
    train, val = split_val(dev, table.labels, cfg.data.val_size, seed)
    return Splits(dev, test, [], train, val)


def check_leakage(cfg: Config, table: LabelledTable, splits: Splits) -> Optional[list[dict[str, Any]]]:
    """The leakage checks of ``data.leakage_check`` on a new run's rows: each finding a warning, or with
    ``error`` the first one as a UserError (before anything is written); None when the check is off."""
    if cfg.data.leakage_check == "off":
        return None
    seed = cfg.cross_validation.random_state
    found = streamed_leakage_findings(table, splits.dev, splits.test, seed) if isinstance(table, StreamedTable) \
        else leakage_findings(table.features, table.labels, splits.dev, splits.test, seed)
    if found and cfg.data.leakage_check == "error":
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise UserError(f"leakage check: {found[0].message}{more}; data.leakage_check=warn trains anyway")
    for finding in found:
        if is_primary_process():
            log.warning(f"leakage check: {finding.message}")
    return [f.to_json() for f in found]


# --------------------------------------------------------------- the rules
def check_flags(*, cross_validate: bool, fold: Optional[int] = None, gather: bool = False,
                named: bool = False) -> None:
    """The rules of ``--fold`` and ``--gather``: CV only, not both, and a gather names the run it summarises."""
    if fold is not None and not cross_validate:
        raise UserError("--fold needs --use-cv")
    if gather and not cross_validate:
        raise UserError("--gather needs --use-cv")
    if gather and fold is not None:
        raise UserError("--gather summarises the folds that --fold jobs trained; give one of them, not both")
    if gather and not named:
        raise UserError("--gather needs the run's name: --run-name NAME (the one the --fold jobs used) "
                        "or --resume checkpoints/NAME")


def _check_fold(fold: Optional[int], splits: Splits) -> None:
    if fold is not None and not 0 <= fold < len(splits.folds):
        raise UserError(f"--fold {fold}: the run has folds 0 to {len(splits.folds) - 1}")


def check_trainer(cfg: Config) -> None:
    """A GPU that is not there, or 16-mixed on the CPU: refused before a run writes anything."""
    trainer_arguments(cfg.trainer, warn=lambda _msg: None)  # fit_split says the notes, once


def _job_fits(cfg: Config, fold: int) -> list[str]:
    """What a ``--fold K`` job trains: the fold's model and, when configured, its label-permutation baseline."""
    names = [f"fold_{fold}"]
    if cfg.cross_validation.permutation_baseline:
        names.append(permutation_fit_name(fold))
    return names


# ---------------------------------------------------------------- this run
class Training:
    """One run being trained: its folder, config, data and rows; fits, continues or skips its named fits.

    In a DDP job every process trains each fit together; only the first locks, writes and speaks."""

    def __init__(self, cfg: Config, run: RunFolder, table: LabelledTable, splits: Splits, *, quiet: bool = False,
                 extra_callbacks: Optional[ExtraCallbacks] = None) -> None:
        self.cfg, self.run, self.table, self.splits = cfg, run, table, splits
        self.primary = is_primary_process()
        self.quiet = quiet or not self.primary
        self.extra_callbacks = extra_callbacks
        self.metadata = run_metadata(cfg, run, table, splits.test)
        leakage = run.path / "leakage_check.json"  # what the checks found when the run began: in every checkpoint
        if leakage.is_file():
            self.metadata["leakage"] = [f["message"] for f in read_run_file(leakage, "json").get("findings", [])]

    @classmethod
    def open(cls, cfg: Optional[Config], *, cross_validate: bool, run_name: Optional[str] = None,
             resume: Optional[str | Path] = None, gather: bool = False, fold: Optional[int] = None,
             quiet: bool = False, extra_callbacks: Optional[ExtraCallbacks] = None) -> "Training":
        """A new run (or one that ``--fold`` jobs share), or the run ``resume`` points into; bad data, impossible
        splits, a run of the other kind or a changed data file stop here, before anything is written."""
        primary = is_primary_process()
        if resume:
            run, cfg = find_run(resume)
            if is_cv_run(run) != cross_validate:
                raise UserError(f"{run.path} is a single train/validation run, not a cross-validation run"
                                if cross_validate else f"{run.path} is a cross-validation run: resume it with --use-cv")
            check_trainer(cfg)
            if primary and not gather:
                where.info(f"Resuming run {run.path} (finished: {', '.join(run.finished()) or 'nothing yet'})")
            table = load_training_data(cfg.data)
            splits = load_splits(run, table)
            _check_fold(fold, splits)
        else:
            if cfg is None:
                raise TypeError("a new run needs a config (or resume=PATH)")
            check_trainer(cfg)
            table = load_training_data(cfg.data)
            splits = Splits(*compute_splits(cfg, table)) if cross_validate else _single_split(cfg, table)
            _check_fold(fold, splits)
            leakage = None if gather else check_leakage(cfg, table, splits)
            name = choose_run_name(run_name, "cv" if cross_validate else "single")
            run = RunFolder(Path(cfg.checkpoint.save_dir) / name)
            if gather and not (run.path / "splits.json").is_file():
                raise UserError(f"--gather: there is no run '{name}' in {cfg.checkpoint.save_dir} "
                                f"(its --fold jobs write {run.path})")
            if primary:
                open_run(cfg, name)
            if (run.path / "splits.json").is_file():  # --fold jobs of one run share its splits
                if is_cv_run(run) != cross_validate:
                    raise UserError(f"run '{name}' is a single train/validation run: pick a new --run-name"
                                    if cross_validate else
                                    f"run '{name}' is a cross-validation run: use --use-cv, or a new --run-name")
                splits = load_splits(run, table)
            elif primary:
                save_splits(run, table, splits)
            if primary and leakage is not None:
                write_json(run.path / "leakage_check.json", {"setting": cfg.data.leakage_check, "findings": leakage})
            if primary:
                where.info(f"Run folder: {run.path}")
        return cls(cfg, run, table, splits, quiet=quiet, extra_callbacks=extra_callbacks)

    def say(self, message: str) -> None:
        if self.primary:
            log.info(message)

    @contextmanager
    def active(self) -> Iterator[None]:
        """While fits train: DDP processes started for them inherit the run's name, and Ctrl-C names the
        folder that ``--resume`` continues."""
        with shared_run_name(self.run.name), resumable(self.run):
            yield

    def fit(self, name: str, train: np.ndarray, val: np.ndarray, *, eval_idx: Optional[np.ndarray] = None,
            seed: Optional[int] = None, log_metrics: bool = True, table: Optional[LabelledTable] = None,
            meta: Optional[dict[str, Any]] = None, cfg: Optional[Config] = None) -> FitResult:
        """The fit ``name``: its saved result when finished, else trained (from its last.ckpt if there is one)
        under its lock, and its result saved in the manifest. ``cfg``: another config than the run's for this
        fit (the model that ``train.py --select`` chose), recorded in its checkpoint."""
        done = self.run.load_result(name)
        if done is not None:
            self.say(f"{name}: finished earlier, skipped")
            return done
        with FoldLock(self.run.path / name, name) if self.primary else nullcontext():
            done = self.run.load_result(name) if self.primary else None  # finished by another job meanwhile
            if done is not None:
                return done
            last = self.run.last_checkpoint(name)
            if last is not None:
                self.say(f"{name}: continuing from {last}")
            metadata = dict(self.metadata, **(meta or {}))
            if cfg is not None:
                metadata["config"] = cfg.to_dict()
            result = fit_split(cfg or self.cfg, self.table if table is None else table, train, val,
                               self.run.path / name, name=name, run_name=self.run.name, eval_idx=eval_idx, seed=seed,
                               resume_from=last, log=log_metrics, quiet=self.quiet, metadata=metadata,
                               extra_callbacks=self.extra_callbacks(name) if self.extra_callbacks else None)
            if self.primary:
                self.run.save_result(result)
        return result

    def publish(self, result: FitResult) -> Optional[str]:
        """The fit's best checkpoint becomes ``best_model.ckpt`` (by the first process only)."""
        return publish_best(self.cfg, Path(result.checkpoint)) if self.primary else None


def publish_best(cfg: Config, checkpoint: Path) -> str:
    """Copy a run's chosen checkpoint to ``<save_dir>/best_model.ckpt`` (the default for test/assess/upload)."""
    target = Path(cfg.checkpoint.save_dir) / "best_model.ckpt"
    with atomic_target(target) as tmp:
        shutil.copyfile(checkpoint, tmp)
    return str(target)


# --------------------------------------------------------------------- runs
def train(cfg: Optional[Config], *, cross_validate: bool = False, run_name: Optional[str] = None,
          resume: Optional[str | Path] = None, fold: Optional[int] = None, gather: bool = False,
          quiet: bool = False) -> CVResult | SingleResult | None:
    """What train.py runs: cross-validation or a single split (a resume keeps the run's own kind), under the
    rules of ``--fold`` and ``--gather``. None for a ``--fold`` job and in every DDP process but the first."""
    if resume:
        cross_validate = is_cv_run(find_run(resume)[0])
    check_flags(cross_validate=cross_validate, fold=fold, gather=gather, named=bool(run_name or resume))
    if cross_validate:
        return run_cv(cfg, run_name=run_name, resume=resume, only_fold=fold, gather=gather, quiet=quiet)
    return _single(cfg, run_name=run_name, resume=resume, quiet=quiet, extra_callbacks=None)


def run_cv(cfg: Optional[Config], *, run_name: Optional[str] = None, resume: Optional[str | Path] = None,
           only_fold: Optional[int] = None, gather: bool = False, quiet: bool = False,
           extra_callbacks: Optional[ExtraCallbacks] = None) -> Optional[CVResult]:
    """Cross-validate ``cfg`` (or continue the run ``resume`` points into); returns the results (None when
    ``only_fold`` ran a single fold, and in every process of a DDP job but the first).

    ``only_fold=K`` trains fold K and its permutation baseline only (a job of a job array);
    ``gather=True`` summarises a run whose folds those jobs trained: it trains no fold (a missing one is
    an error), only the final model, and writes what a whole run writes.
    """
    check_flags(cross_validate=True, fold=only_fold, gather=gather, named=bool(run_name or resume))
    t = Training.open(cfg, cross_validate=True, run_name=run_name, resume=resume, gather=gather, fold=only_fold,
                      quiet=quiet, extra_callbacks=extra_callbacks)
    return cross_validate_run(t, only_fold=only_fold, gather=gather)


def unfinished_folds(t: Training) -> list[int]:
    """The folds of ``t`` whose model (or permutation baseline, when configured) has not finished."""
    return [f.fold for f in t.splits.folds if any(t.run.load_result(n) is None for n in _job_fits(t.cfg, f.fold))]


def cross_validate_run(t: Training, *, only_fold: Optional[int] = None, gather: bool = False) -> Optional[CVResult]:
    """:func:`run_cv` on a run already opened."""
    folds = t.splits.folds
    if gather:
        missing = unfinished_folds(t)
        if missing:
            many = len(missing) > 1
            raise UserError(f"--gather: run '{t.run.name}' has not finished fold{'s' if many else ''} "
                            f"{', '.join(map(str, missing))} (train.py --use-cv --run-name {t.run.name} --fold "
                            f"{'K trains fold K' if many else f'{missing[0]} trains it'}; without --gather this "
                            f"command trains {'them' if many else 'it'} itself)")
        t.say(f"Gathering run {t.run.path}: {len(folds)} folds finished")
    with t.active():
        results = [_fold_fit(t, f) for f in folds if only_fold is None or f.fold == only_fold]
        if only_fold is None:
            return _finish_cv(t, results)
        if t.cfg.cross_validation.permutation_baseline:  # its share of the baselines, so the gather step trains none
            _permutation_fit(t, folds[only_fold])
        t.say(f"fold_{only_fold} done: ROC AUC {results[0].eval_metrics['auroc']:.3f}; once every fold is "
              f"finished, summarise with: train.py --use-cv --run-name {t.run.name} --gather")
        return None


def run_single(cfg: Optional[Config], *, run_name: Optional[str] = None, resume: Optional[str | Path] = None,
               quiet: bool = False, extra_callbacks: Optional[ExtraCallbacks] = None) -> Optional[FitResult]:
    """One stratified train/validation split of the non-test rows (the fit ``single``); its best checkpoint
    becomes best_model.ckpt. In a DDP job every process trains; the first one writes and returns the result."""
    done = _single(cfg, run_name=run_name, resume=resume, quiet=quiet, extra_callbacks=extra_callbacks)
    return done.fit if done else None


def _single(cfg: Optional[Config], *, run_name: Optional[str], resume: Optional[str | Path], quiet: bool,
            extra_callbacks: Optional[ExtraCallbacks]) -> Optional[SingleResult]:
    t = Training.open(cfg, cross_validate=False, run_name=run_name, resume=resume, quiet=quiet,
                      extra_callbacks=extra_callbacks)
    s = t.splits
    t.say(f"Training on {len(s.train)} rows, validating on {len(s.val)} ({len(s.test)} test rows held out)")
    with t.active():
        fit = t.fit("single", s.train, s.val)
    best = t.publish(fit)
    return SingleResult(t.run.path, fit, best) if best is not None else None


def _fold_fit(t: Training, fold: FoldSplit) -> FitResult:
    t.say(f"Fold {fold.fold + 1}/{len(t.splits.folds)}: {len(fold.train)} train, {len(fold.val)} validation, "
          f"{len(fold.eval)} held-out rows")
    return t.fit(f"fold_{fold.fold}", fold.train, fold.val, eval_idx=fold.eval, seed=t.cfg.training.seed + fold.fold,
                 meta={"fold": fold.fold})


def _permutation_fit(t: Training, fold: FoldSplit) -> FitResult:
    """The fold's model retrained on its shuffled labels, measured on its true held-out labels; no logs."""
    t.say(f"Label-permutation baseline {fold.fold + 1}/{len(t.splits.folds)}")
    return t.fit(permutation_fit_name(fold.fold), fold.train, fold.val, eval_idx=fold.eval,
                 seed=t.cfg.training.seed + fold.fold, log_metrics=False, table=permuted_table(t.cfg, t.table, fold))


def _finish_cv(t: Training, results: list[FitResult]) -> Optional[CVResult]:
    """Fold table, baselines, verdict, final model and the result files of a run whose folds are trained."""
    cfg, table, splits = t.cfg, t.table, t.splits
    rows = [fold_row(r, f, table) for r, f in zip(results, splits.folds)]
    summary = summarize(rows, TABLE_METRICS + ["threshold"] + [c for c in TYPE_COLUMNS if c in rows[0]])
    oof = out_of_fold(results, splits.folds, table)
    permutation = [_permutation_fit(t, f) for f in splits.folds] if cfg.cross_validation.permutation_baseline else None
    found = baselines(table, splits.folds, permutation)
    verdict = judge(summary, oof["score"].to_numpy(), oof["label"].to_numpy(), found, cfg.threshold.method)
    result = CVResult(t.run.path, rows, summary, found, verdict, attack_types=oof_type_recall(oof, cfg.data.family_of),
                      leakage=t.metadata.get("leakage"))
    if t.primary:
        result.files = write_tables(t.run.path, rows, summary, oof)
        if result.attack_types:
            result.files["type_recall_csv"] = write_type_table(t.run.path, result.attack_types)
    if cfg.cross_validation.train_final_model:
        t.say(f"Final model on all {len(splits.dev)} non-test rows")
        fit_rows, val_rows = split_val(splits.dev, table.labels, cfg.data.val_size, cfg.cross_validation.random_state)
        final = t.fit("final", fit_rows, val_rows, seed=cfg.training.seed,
                      meta={"cv_summary": summary, "cv_verdict": verdict["message"]})
        result.final_checkpoint = t.publish(final)
    if not t.primary:
        return None
    card = t.run.path / "evaluation_card.md"
    with atomic_target(card) as tmp:
        tmp.write_text(evaluation_card(cfg, table, splits, result, t.metadata.get("data_sha256")))
    result.files["evaluation_card"] = str(card)
    write_results(result, t.run.name, len(table), int(len(splits.test)))
    wandb_dir = log_wandb_summary(cfg, t.run.name, summary, rows)
    if wandb_dir:
        result.files["wandb_summary"] = wandb_dir
    return result
