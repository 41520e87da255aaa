"""LightningModule around :class:`~netad.models.mlp.MLP`.

It owns the loss, the optimizer and scheduler, the per-stage torchmetrics collections and
the decision threshold. The threshold is re-chosen on the validation rows at the end of
every validation epoch, so each saved checkpoint carries the threshold that belongs to its
own weights; test and predict only ever read it. The fitted preprocessing is saved in the
checkpoint under ``checkpoint["netad"]`` so inference reuses it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
import torch.nn.functional as F

import netad
from netad.errors import CONTENT_ERRORS, UserError, first_line
from netad.metrics import binary_metrics, choose_threshold
from netad.models.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_KEY, checkpoint_problem, read_checkpoint
from netad.models.calibration import Calibration
from netad.models.mlp import MLP
from netad.models.novelty import NoveltyScorer, fusion_of, hybrid_score, scorer_from_state


class AnomalyClassifier(L.LightningModule):
    def __init__(
        self,
        input_dim: int,
        hidden_dims: list[int],
        dropout: float = 0.3,
        activation: str = "relu",
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: str = "adam",
        scheduler: str = "none",
        num_epochs: int = 50,
        class_weights: tuple[float, float] = (1.0, 1.0),
        threshold_method: str = "max_f1",
        target_fpr: float = 0.01,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # training_step runs the optimizer itself: one trainer step may hold several batches
        self.automatic_optimization = False
        self.model = MLP(input_dim, hidden_dims, dropout, activation)
        self.register_buffer("class_weights", torch.tensor(class_weights, dtype=torch.float32))
        self.register_buffer("threshold", torch.tensor(0.5))
        # the latest value of every epoch metric (train/..., val/...), as the loggers received it
        self.epoch_metrics: dict[str, float] = {}
        self._outputs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"train": [], "val": [], "test": []}
        # set by the training code before fit; restored from checkpoints
        self.preprocessor_state: Optional[dict[str, Any]] = None
        self.metadata: dict[str, Any] = {}
        # hybrid models: a novelty scorer fitted on normal training rows after the classifier (see attach_novelty)
        self.novelty: Optional[NoveltyScorer] = None
        self.novelty_state: Optional[dict[str, Any]] = None
        self.fusion: Optional[dict[str, Any]] = None  # the hybrid's rule (None: "or"; see netad.models.novelty)
        self.calibration: Optional[Calibration] = None  # fitted on validation rows after training (calibration:)
        self.calibration_state: Optional[dict[str, Any]] = None
        self._train_loss: list[torch.Tensor] = []
        self._checkpoint_step: Optional[int] = None  # the global step of the checkpoint a resume restores

    # ------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @property
    def is_hybrid(self) -> bool:
        return self.novelty is not None

    def anomaly_score(self, x: torch.Tensor) -> torch.Tensor:
        """The model's score in [0, 1], flagged at ``self.threshold``: the classifier's probability,
        or for a hybrid the rule of :func:`netad.models.novelty.hybrid_score`."""
        logits = self(x)
        if self.calibration is not None:
            return self.calibration(logits)
        if self.novelty is None:
            return torch.sigmoid(logits.float())
        if self.novelty.threshold.device != x.device:  # kept outside the module registry: follow the batch
            self.novelty.to(x.device)
        return hybrid_score(logits, self.novelty(x), float(self.threshold), self.novelty.threshold, self.fusion)

    def attach_calibration(self, state: dict[str, Any]) -> None:
        """Calibrate the probability with ``state`` (:func:`netad.models.calibration.fit_calibration`); kept out of
        the state_dict like the novelty scorer: it travels as checkpoint["netad"]["calibration"]."""
        object.__setattr__(self, "calibration", Calibration(state))
        self.calibration_state = state

    def attach_novelty(self, state: dict[str, Any]) -> None:
        """Make this a hybrid: ``state`` from a portable detector's ``novelty_state()``."""
        # set outside nn.Module's registry: the classifier's state_dict (and resumable training
        # checkpoints) stay the classifier's; the scorer travels as checkpoint["netad"]["novelty"]
        object.__setattr__(self, "novelty", scorer_from_state(state))
        self.fusion = fusion_of(state)
        self.novelty_state = state

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        weights = self.class_weights[y.long()]
        return F.binary_cross_entropy_with_logits(logits.float(), y.float(), weight=weights)

    def _step(self, stage: str, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = self._loss(logits, y)
        self._outputs[stage].append((logits.detach().float(), y.detach()))
        if stage == "train":
            self._train_loss.append(loss.detach())
        return loss

    def on_train_epoch_start(self) -> None:
        # dropout noise depends only on (seed, epoch) (and the DDP process): a resumed run repeats an uninterrupted one
        torch.manual_seed(self.hparams.seed * 100_003 + self.current_epoch + 7_919 * self.global_rank)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """One ``(x, y)`` batch, or a tuple of them (``TensorBatchLoader(steps_per_item=k)``): one optimizer
        step per batch, in order. Manual optimization, so that one trainer step can run several; the
        precision plugin still scales and unscales through ``manual_backward`` and ``opt.step``, and
        ``trainer.global_step`` (the loggers' x-axis) counts every optimizer step."""
        opt = self.optimizers()
        batches = (batch,) if isinstance(batch[0], torch.Tensor) else batch
        for pair in batches:
            # logged once per epoch in on_train_epoch_end: self.log on every step costs as much as the step
            loss = self._step("train", pair)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step("val", batch)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        if self.novelty is None:
            self._step("test", batch)
            return
        x, y = batch  # a hybrid is measured on its combined score, kept as it is (not as logits)
        self._outputs["test"].append((self.anomaly_score(x).detach(), y.detach()))

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.anomaly_score(x)

    # ------------------------------------------------------ epoch metrics
    def _collect(self, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, targets) of the epoch's batches, and the buffer emptied."""
        outputs = self._outputs[stage]
        self._outputs[stage] = []
        return torch.cat([lg for lg, _ in outputs]), torch.cat([t for _, t in outputs])

    def _stage_values(self, stage: str, logits: torch.Tensor, target: torch.Tensor,
                      scores: bool = False) -> dict[str, float]:
        """The stage's metrics at the current threshold; ``scores=True`` when the buffer holds final scores.

        No syncing under DDP: every process validates and tests on all rows, and the training rows of all
        processes are gathered before this (on_train_epoch_end). Undefined values (AUROC with one class) are
        left out.
        """
        probs = logits if scores else torch.sigmoid(logits)
        values = binary_metrics(probs, target, float(self.threshold))
        return {f"{stage}/{k}": v for k, v in values.items() if not math.isnan(v)}

    def _monitored(self) -> set[str]:
        """The keys some callback watches (checkpoint, early stopping)."""
        return {m for m in (getattr(cb, "monitor", None) for cb in self.trainer.callbacks) if isinstance(m, str)}

    def _log_epoch(self, values: dict[str, float]) -> None:
        """One epoch's metrics of one stage: to every logger in one call, at the step Lightning would use
        (the epoch's last optimizer step), and through ``self.log`` only for the keys callbacks monitor.

        ``self.log`` costs about half a millisecond per key and epoch (Lightning walks its result
        containers), as much as a few training steps of a small MLP: logging a dozen metrics that way made
        epoch bookkeeping a visible part of small-data training. ``epoch_metrics`` keeps every value.
        """
        if not values or self.trainer.sanity_checking:
            return
        self.epoch_metrics.update(values)
        for key in self._monitored() & values.keys():
            self.log(key, values[key], on_step=False, on_epoch=True, logger=False)
        if self.trainer.loggers:
            row = dict(values, epoch=self.current_epoch)  # as Lightning adds to every row it logs
            for lg in self.trainer.loggers:  # loggers write on the first DDP process only
                lg.log_metrics(row, step=max(self.global_step - 1, 0))

    def _step_scheduler(self) -> None:
        """Once per epoch, after validation and before this epoch's checkpoints are written, so a resumed
        run continues with exactly the learning rate an uninterrupted one would have used."""
        sched = self.lr_schedulers()
        if sched is None:
            return
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if "val/loss" in self.epoch_metrics:  # this epoch's: validation runs before on_train_epoch_end
                sched.step(self.epoch_metrics["val/loss"])
        else:
            sched.step()

    def on_train_epoch_end(self) -> None:
        self._step_scheduler()
        distributed = self.trainer.world_size > 1
        values: dict[str, float] = {}
        if self._train_loss:
            loss = torch.stack(self._train_loss).mean()
            self._train_loss = []
            # DDP processes hold equal shares of the rows (padded), so the mean of their means is the epoch's mean
            values["train/loss"] = float(self.all_gather(loss).mean() if distributed else loss)
        if self._outputs["train"]:
            logits, target = self._collect("train")
            if distributed:  # every process gets the same rows, the training rows of all of them
                logits, target = (t.reshape(-1) for t in self.all_gather((logits.reshape(-1), target.reshape(-1))))
            values.update(self._stage_values("train", logits, target))
        self._log_epoch(values)

    def on_validation_epoch_end(self) -> None:
        if not self._outputs["val"]:
            return
        logits, target = self._collect("val")
        if not self.trainer.sanity_checking:
            self.threshold.fill_(
                choose_threshold(torch.sigmoid(logits).cpu().numpy(), target.cpu().numpy(),
                                 self.hparams.threshold_method, self.hparams.target_fpr)
            )
        values = {"val/loss": float(self._loss(logits, target)), "val/threshold": float(self.threshold)}
        values.update(self._stage_values("val", logits, target))
        self._log_epoch(values)

    def on_test_epoch_end(self) -> None:
        # trainer.test (training itself measures held-out rows without a test loop): once, through self.log
        if self._outputs["test"]:
            values = self._stage_values("test", *self._collect("test"), scores=self.novelty is not None)
            self.log_dict(values, on_step=False, on_epoch=True)

    # ---------------------------------------------------------- optimizer
    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = self.parameters()
        if hp.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
        elif hp.optimizer == "adamw":
            opt = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.SGD(params, lr=hp.learning_rate, weight_decay=hp.weight_decay, momentum=0.9)
        if hp.scheduler == "none":
            return opt
        if hp.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, hp.num_epochs // 3), gamma=0.1)
        elif hp.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=hp.num_epochs)
        else:
            # stepped with this epoch's val/loss (manual optimization: see _step_scheduler)
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=3)
        return {"optimizer": opt, "lr_scheduler": sched}

    # --------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "format": CHECKPOINT_FORMAT,
            "package_version": netad.__version__,
            "threshold": float(self.threshold),
            "preprocessor": self.preprocessor_state,
            "metadata": self.metadata,
        }
        if self.novelty_state is not None:
            checkpoint[CHECKPOINT_KEY]["novelty"] = self.novelty_state
        if self.calibration_state is not None:
            checkpoint[CHECKPOINT_KEY]["calibration"] = self.calibration_state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        ours = checkpoint.get(CHECKPOINT_KEY, {})
        self.preprocessor_state = ours.get("preprocessor")
        self.metadata = ours.get("metadata", {})
        if ours.get("novelty") is not None:
            self.attach_novelty(ours["novelty"])
        if ours.get("calibration") is not None:
            self.attach_calibration(ours["calibration"])
        self._checkpoint_step = checkpoint.get("global_step")

    def on_train_start(self) -> None:
        """A resume must continue the step count it was saved with. A netad older than grouped optimizer
        steps (one batch per trainer step, automatic optimization) counted steps where Lightning no longer
        reads them for this module: its checkpoints still score, but a resume would restart the count."""
        saved = self._checkpoint_step
        if self.trainer.ckpt_path and saved is not None and saved != self.trainer.global_step:
            raise UserError(f"{self.trainer.ckpt_path}: written by an older netad (one batch per trainer step): "
                            f"it still scores, but cannot continue training; train anew")


def classifier_from_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> AnomalyClassifier:
    """Rebuild the classifier from a loaded checkpoint dict (see :func:`read_checkpoint`); contents that do
    not make a working classifier raise one UserError naming ``source``."""
    problem = checkpoint_problem(ckpt)
    if problem:
        raise UserError(f"{source}: {problem}")
    try:
        model = AnomalyClassifier(**ckpt["hyper_parameters"])
        model.load_state_dict(ckpt["state_dict"])
        model.on_load_checkpoint(ckpt)
    except CONTENT_ERRORS as exc:
        raise UserError(f"{source}: the checkpoint does not make a working classifier ({first_line(exc)})") from None
    model.eval()
    try:  # one row through every part (a hybrid's novelty scorer too): parts that do not fit fail here
        with torch.no_grad():
            model.anomaly_score(torch.zeros(1, model.hparams.input_dim))
    except CONTENT_ERRORS as exc:
        raise UserError(f"{source}: the model's parts do not fit together ({first_line(exc)})") from None
    return model


def load_classifier(path: str | Path) -> AnomalyClassifier:
    """The trained classifier in eval mode, with its preprocessing state and threshold."""
    return classifier_from_checkpoint(read_checkpoint(path), source=str(path))  # which checks the contents
