"""Train one split (a fold, the final model, or a single train/validation run)."""

from __future__ import annotations

import logging
import signal
import time
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from sklearn.utils.class_weight import compute_class_weight

from netad.io import atomic_target
from netad.lightning_setup import quiet_lightning
from netad.config import Config
from netad.data.datamodule import NetworkDataModule
from netad.data.outofcore import OutOfCoreDataModule
from netad.data.streaming import StreamedTable
from netad.data.loading import LabelledTable
from netad.data.summary import SCORE_EDGES, SCORE_POINTS, numeric_summary, summarize_training_rows
from netad.errors import UserError
from netad.inference import NetadPredictor
from netad.metrics import choose_threshold, compute_metrics, expected_calibration_error, held_out_metrics
from netad.models.calibration import Calibration, fit_calibration
from netad.models.checkpoint import CHECKPOINT_KEY, read_checkpoint
from netad.models.classifier import AnomalyClassifier
from netad.threads import limit_threads
from netad.training.hardware import describe, is_primary_process, trainer_arguments
from netad.tracking.loggers import build_loggers, finish_loggers, log_metrics
from netad.training.callbacks import EpochProgressBar

quiet_lightning()
_already_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """A warning that every fold of a run would repeat is said once per process, by the first process of a
    distributed job only (``--quiet`` silences progress, not warnings)."""
    if is_primary_process() and message not in _already_warned:
        _already_warned.add(message)
        logging.getLogger("netad").warning(message)


def seen_types(table: LabelledTable, rows: np.ndarray) -> list[str]:
    """The attack types among the anomalous ``rows`` of ``table`` (sorted)."""
    return sorted({str(t) for t in table.types[rows][table.labels[rows] == 1]})


def class_weights(labels: np.ndarray, spec: Any) -> tuple[float, float]:
    """(weight of normal, weight of anomaly) from the training rows of this split."""
    if spec == "balanced":
        w = compute_class_weight("balanced", classes=np.array([0, 1]), y=labels)
        return float(w[0]), float(w[1])
    if spec == "none":
        return 1.0, 1.0
    if isinstance(spec, dict):
        return float(spec[0]), float(spec[1])
    return 1.0, float(spec)


def build_classifier(cfg: Config, input_dim: int, weights: tuple[float, float], seed: int) -> AnomalyClassifier:
    """A fresh classifier as the config describes it."""
    tc, mc = cfg.training, cfg.model
    return AnomalyClassifier(
        input_dim=input_dim,
        hidden_dims=list(mc.hidden_dims),
        dropout=mc.dropout,
        activation=mc.activation,
        learning_rate=tc.learning_rate,
        weight_decay=tc.weight_decay,
        optimizer=tc.optimizer,
        scheduler=tc.scheduler,
        num_epochs=tc.num_epochs,
        class_weights=weights,
        threshold_method=cfg.threshold.method,
        target_fpr=cfg.threshold.target_fpr,
        seed=seed,
    )


@dataclass
class FitResult:
    name: str
    checkpoint: str
    threshold: float
    best_epoch: int
    epochs_run: int
    val_metrics: dict[str, float]
    eval_metrics: dict[str, float] = field(default_factory=dict)
    eval_scores: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic: an interrupt during a save keeps the previous file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        with atomic_target(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt``, the state a resume continues from: after an epoch once ``every_seconds`` have passed since
    the previous write (0: every epoch), and always after the fit's last epoch.

    A resume repeats at most ``every_seconds`` of training, with the same result; short epochs are not
    slowed by a full training state written after each. (``save_last=True`` on the monitored callback would
    refresh it only on improving epochs.) Its own class gives it its own state key, apart from an
    every-epoch ``epoch-NNN`` callback's.
    """

    def __init__(self, dirpath: Path, every_seconds: float = 0.0) -> None:
        # written at the end of the training epoch (after its validation), where on_train_epoch_end decides
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1, save_on_train_epoch_end=True,
                         auto_insert_metric_name=False, enable_version_counter=False)
        self.every_seconds = every_seconds
        self._written_at = time.monotonic()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._written_at = time.monotonic()

    def _due(self, trainer: L.Trainer) -> bool:
        # early stopping decides before checkpoints are written (Lightning runs checkpoint callbacks last)
        final = trainer.should_stop or trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        return final or time.monotonic() - self._written_at >= self.every_seconds

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the first process's clock decides for all: a save ends at a barrier every DDP process must reach
        if trainer.strategy.broadcast(self._due(trainer)):
            super().on_train_epoch_end(trainer, pl_module)
            self._written_at = time.monotonic()


def fit_novelty_detector(name: str, params: dict[str, Any], x_train: np.ndarray, y_train: np.ndarray, seed: int,
                         contamination: float = 0.05) -> Any:
    """A portable detector fitted on the normal rows of ``x_train`` (preprocessed features); its warnings (a
    detector whose scores cannot rank normal rows) are said once, and kept in its state."""
    from netad.detectors import make_detector

    detector = make_detector(name, random_state=seed, contamination=min(contamination, 0.49), **params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector.fit(x_train, y_train)
    for w in caught:
        _warn_once(f"hybrid novelty part: {w.message}")
    return detector


def attach_novelty(cfg: Config, ckpt: dict[str, Any], dm: NetworkDataModule, seed: int) -> None:
    """Hybrid models: fit ``hybrid.detector`` on the normal training rows, place its threshold on the
    normal validation rows at ``hybrid.novelty_fpr``, and store it in the best checkpoint's dict. With
    ``hybrid.combine: stack`` the stacked score's threshold is chosen on the validation rows (as the
    classifier's was), replacing the classifier's."""
    hc = cfg.hybrid
    x_train, y_train = dm.tensors["train"]
    x_val, y_val = dm.tensors["val"]
    detector = fit_novelty_detector(hc.detector, hc.params, x_train.numpy(), y_train.numpy(), seed, hc.novelty_fpr)
    normal_val = x_val.numpy()[y_val.numpy() == 0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector.calibrate(normal_val, np.zeros(len(normal_val)), target_fpr=hc.novelty_fpr)
    for w in caught:
        _warn_once(f"hybrid novelty part: {w.message}")
    ours = ckpt[CHECKPOINT_KEY]
    ours["novelty"] = detector.novelty_state()
    if hc.combine == "stack":
        ours["novelty"]["fusion"] = {"rule": "stack", "weights": dict(hc.stack_weights)}
        with torch.no_grad():
            val_scores = NetadPredictor.from_checkpoint_dict(ckpt, source="best checkpoint").score_features(
                x_val).numpy()
        threshold = choose_threshold(val_scores, y_val.numpy(), cfg.threshold.method, cfg.threshold.target_fpr)
        ours["threshold"] = threshold
        ckpt["state_dict"]["threshold"] = torch.tensor(threshold, dtype=ckpt["state_dict"]["threshold"].dtype)


def attach_calibration(cfg: Config, ckpt: dict[str, Any], dm: NetworkDataModule) -> None:
    """``calibration: temperature | isotonic``: fit it on the validation rows' logits, choose the threshold again on
    the calibrated validation scores (same rows, same rule), and store both in the best checkpoint, with the
    validation rows' expected calibration error before and after."""
    x_val, y_val = dm.tensors["val"]
    labels = y_val.numpy()
    if len(np.unique(labels)) < 2:
        raise UserError(f"calibration {cfg.calibration}: the validation rows hold one class only: nothing to "
                        f"calibrate against (more rows, or calibration: none)")
    predictor = NetadPredictor.from_checkpoint_dict(ckpt, source="best checkpoint")
    with torch.no_grad():
        logits = predictor.net(x_val)
    state = fit_calibration(cfg.calibration, logits.numpy(), labels)
    with torch.no_grad():
        calibrated = Calibration(state)(logits).numpy()
    state["validation_ece"] = {"before": expected_calibration_error(torch.sigmoid(logits).numpy(), labels),
                               "after": expected_calibration_error(calibrated, labels)}
    threshold = choose_threshold(calibrated, labels, cfg.threshold.method, cfg.threshold.target_fpr)
    ours = ckpt[CHECKPOINT_KEY]
    ours["calibration"] = state
    ours["threshold"] = threshold
    ckpt["state_dict"]["threshold"] = torch.tensor(threshold, dtype=ckpt["state_dict"]["threshold"].dtype)


def attach_summary(ckpt: dict[str, Any], dm: NetworkDataModule, predictor: NetadPredictor,
                   scores: np.ndarray) -> None:
    """Store the compact training-data summary drift checks compare new traffic with
    (:mod:`netad.data.summary`): the training rows' columns, the validation rows' ``scores`` (all, and the normal
    ones), and how many validation rows the model flags."""
    summary = summarize_training_rows(dm.summary_rows()[predictor.columns], predictor.preprocessor.state)
    labels = dm.table.labels[dm.val_idx]
    # the scores of the validation rows (the training traffic's mix, which new traffic is compared with), and of
    # its normal rows alone
    summary["score"] = dict(numeric_summary(scores, SCORE_EDGES, SCORE_POINTS), rows_from="validation rows")
    summary["score_normal"] = dict(numeric_summary(scores[labels == 0], SCORE_EDGES, SCORE_POINTS),
                                   rows_from="normal validation rows")
    flagged = scores >= predictor.threshold
    summary["flagged"] = {"rows": int(len(scores)), "flagged": int(flagged.sum()),
                          "normal_rows": int((labels == 0).sum()), "normal_flagged": int(flagged[labels == 0].sum())}
    ckpt[CHECKPOINT_KEY]["data_summary"] = summary


def _run_trainer(trainer: L.Trainer, fn_name: str, *args: Any, **kwargs: Any) -> Any:
    """``trainer.fit`` / ``trainer.test``, with Ctrl-C kept a KeyboardInterrupt.

    Lightning answers a KeyboardInterrupt with ``sys.exit(1)`` and leaves SIGINT ignored; callers
    (the CLI: "interrupted: resume with --resume", exit 130) need the interrupt itself back.
    """
    main_thread = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        return getattr(trainer, fn_name)(*args, **kwargs)
    except SystemExit:
        if not trainer.interrupted:
            raise
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
        raise KeyboardInterrupt from None


def fit_split(
    cfg: Config,
    table: LabelledTable,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    out_dir: Path,
    *,
    name: str,
    run_name: str,
    eval_idx: Optional[np.ndarray] = None,
    seed: Optional[int] = None,
    resume_from: Optional[Path] = None,
    log: bool = True,
    quiet: bool = False,
    metadata: Optional[dict[str, Any]] = None,
    extra_callbacks: Optional[list[Callback]] = None,
) -> FitResult:
    """Fit preprocessing and a fresh model on ``train_idx``; select on ``val_idx``; measure on ``eval_idx``.

    Checkpoints go to ``out_dir`` (``best.ckpt``, ``last.ckpt``, every-N-epoch files).
    ``resume_from`` continues the exact trainer state of an interrupted fit. PyTorch and scikit-learn use
    ``trainer.num_threads`` threads meanwhile.
    """
    with limit_threads(cfg.trainer.num_threads):
        return _fit_split(cfg, table, train_idx, val_idx, out_dir, name=name, run_name=run_name, eval_idx=eval_idx,
                          seed=seed, resume_from=resume_from, log=log, quiet=quiet, metadata=metadata,
                          extra_callbacks=extra_callbacks)


def _fit_split(cfg: Config, table: LabelledTable, train_idx: np.ndarray, val_idx: np.ndarray, out_dir: Path, *,
               name: str, run_name: str, eval_idx: Optional[np.ndarray], seed: Optional[int],
               resume_from: Optional[Path], log: bool, quiet: bool, metadata: Optional[dict[str, Any]],
               extra_callbacks: Optional[list[Callback]]) -> FitResult:
    seed = cfg.training.seed if seed is None else seed
    L.seed_everything(seed, workers=False, verbose=False)
    out_dir.mkdir(parents=True, exist_ok=True)

    if isinstance(table, StreamedTable):  # out of core: the fold's rows, held-out ones too, go to files once
        if cfg.model.type == "hybrid" or cfg.calibration != "none":
            raise UserError("out of core (data.in_memory: false) the classifier trains alone: a hybrid's novelty "
                            "part and calibration need the rows in memory (model.type: classifier, calibration: none)")
        dm: Any = OutOfCoreDataModule(cfg, train_idx, val_idx, eval_idx, table=table, seed=seed,
                                      folder=out_dir / "rows")
    else:  # the held-out rows are scored by the predictor from the raw rows: the datamodule need not encode them
        dm = NetworkDataModule(cfg, train_idx, val_idx, table=table, seed=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup("fit")
    for w in caught:  # the same warning for every fold of a run is said once
        _warn_once(str(w.message))

    tc = cfg.training
    model = build_classifier(cfg, dm.input_dim, class_weights(dm.train_labels(), tc.class_weight), seed)
    model.preprocessor_state = dm.preprocessor.state_dict()
    # the rows this model was fitted, selected and measured on (assess_model.py shows each part)
    rows = {"train_indices": train_idx, "val_indices": val_idx}
    if eval_idx is not None:
        rows["eval_indices"] = eval_idx
    model.metadata = dict(metadata or {}, split=name, feature_names=dm.preprocessor.state["feature_names"],
                          **{k: torch.from_numpy(np.asarray(v, dtype=np.int64)) for k, v in rows.items()})
    if table.types is not None:  # the attack types the model was fitted and selected on: the rest are unseen
        model.metadata["seen_types"] = seen_types(table, np.concatenate([train_idx, val_idx]))

    monitor, mode = cfg.checkpoint.monitor, cfg.checkpoint.resolved_mode
    # best.ckpt only scores (a resume reads last.ckpt): weights, threshold and preprocessing, no optimizer state
    best_cb = ModelCheckpoint(dirpath=out_dir, filename="best", monitor=monitor, mode=mode, save_top_k=1,
                              save_weights_only=True, auto_insert_metric_name=False, enable_version_counter=False)
    callbacks: list[Callback] = [best_cb]
    if cfg.checkpoint.save_every_n_epochs:
        callbacks.append(ModelCheckpoint(dirpath=out_dir, filename="epoch-{epoch:03d}", save_top_k=-1,
                                         every_n_epochs=cfg.checkpoint.save_every_n_epochs,
                                         auto_insert_metric_name=False))
    callbacks.append(LastCheckpoint(out_dir, cfg.checkpoint.last_every_seconds))  # written last, so it holds the other callbacks' state of the epoch
    if tc.early_stopping_patience is not None:
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, patience=tc.early_stopping_patience))
    if not quiet:
        callbacks.append(EpochProgressBar(name))
    callbacks += list(extra_callbacks or [])

    placement = trainer_arguments(cfg.trainer, warn=_warn_once)
    loggers = build_loggers(cfg, run_name, name, hparams=dict(cfg.to_dict(), split=name)) if log else []
    try:
        trainer = L.Trainer(
            max_epochs=tc.num_epochs,
            callbacks=callbacks,
            logger=loggers or False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            log_every_n_steps=50,
            default_root_dir=str(out_dir),
            plugins=[AtomicCheckpointIO()],  # a Ctrl-C during a save keeps the previous last.ckpt
            # the training loader splits its rows between DDP processes itself, and every process validates on
            # all rows (see NetworkDataModule): no DistributedSampler
            use_distributed_sampler=False,
            **placement,
        )
    except (MisconfigurationException, TypeError, ValueError) as exc:
        # Lightning refusing the trainer section (more GPUs than there are, GPU indices on the CPU, DDP in a
        # notebook, ...): one line, not a traceback; only the validated trainer settings reach this call
        finish_loggers(loggers)
        dm.remove_files()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"trainer settings ({describe(cfg.trainer)}): {first}") from None
    try:
        _run_trainer(trainer, "fit", model, datamodule=dm, ckpt_path=str(resume_from) if resume_from else None)
        if trainer.interrupted:
            raise KeyboardInterrupt
        best_path = Path(best_cb.best_model_path)
        best_ckpt = read_checkpoint(best_path, trained_model=True)
        # what comes after training (novelty part or calibration, the drift summary) joins the best checkpoint,
        # written once
        if cfg.model.type == "hybrid":
            attach_novelty(cfg, best_ckpt, dm, seed)
        elif cfg.calibration != "none":
            attach_calibration(cfg, best_ckpt, dm)
        # the validation and held-out rows scored as they are, by the code that serves the model
        predictor = NetadPredictor.from_checkpoint_dict(best_ckpt, source=str(best_path))
        threshold = predictor.threshold
        val_scores = dm.scores(predictor, "val", val_idx)
        attach_summary(best_ckpt, dm, predictor, val_scores)
        if trainer.is_global_zero:  # under DDP only the first process writes files
            with atomic_target(best_path) as tmp:
                torch.save(best_ckpt, tmp)
        trainer.strategy.barrier("netad.best_checkpoint")
        if eval_idx is not None:  # this split's held-out rows: test/... metrics, logged beside the epochs
            eval_scores = dm.scores(predictor, "eval", eval_idx)
            eval_metrics = held_out_metrics(eval_scores, dm.table.labels[eval_idx], threshold)
            log_metrics(loggers, {f"test/{k}": v for k, v in eval_metrics.items()}, step=trainer.global_step)
    finally:
        finish_loggers(loggers)
        dm.remove_files()  # out of core: the fold's encoded rows (a resume writes them again)

    val_metrics = compute_metrics(val_scores, dm.table.labels[val_idx], threshold)
    result = FitResult(
        name=name,
        checkpoint=str(best_path),
        threshold=threshold,
        best_epoch=int(best_ckpt["epoch"]),
        epochs_run=int(trainer.current_epoch),
        val_metrics=val_metrics,
    )
    if eval_idx is not None:
        result.eval_metrics = eval_metrics
        result.eval_scores = eval_scores.astype(float).tolist()
    return result
