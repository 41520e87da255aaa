"""The supervised classifier behind the detector interface (an adapter), for side-by-side comparisons."""

from __future__ import annotations

import warnings
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from sklearn.model_selection import train_test_split

from netad.config import Config, load_config
from netad.data.datamodule import TensorBatchLoader
from netad.detectors.base import BaseDetector
from netad.lightning_setup import quiet_lightning
from netad.models.classifier import predict_scores


class ClassifierDetector(BaseDetector):
    """``fit(X, y)`` trains the configured MLP on labelled rows (its own stratified validation split
    picks the epoch to stop at and the threshold); ``decision_function`` is its probability,
    standardised like every detector's scores.
    """

    name = "classifier"
    supervised = True

    def __init__(self, cfg: Optional[Config] = None, contamination: float = 0.05, random_state: int = 0) -> None:
        super().__init__(contamination, random_state)
        self.cfg = cfg if cfg is not None else load_config(None)

    def _fit_supervised(self, X: np.ndarray, y: np.ndarray) -> None:
        from netad.training.fit import build_classifier, class_weights

        quiet_lightning()
        cfg, seed = self.cfg, self.random_state
        tr, va = train_test_split(np.arange(len(y)), test_size=cfg.data.val_size, stratify=y, random_state=seed)
        L.seed_everything(seed, workers=False, verbose=False)
        self.model_ = build_classifier(cfg, X.shape[1], class_weights(y[tr], cfg.training.class_weight), seed)
        x_t = torch.from_numpy(X.astype(np.float32))
        y_t = torch.from_numpy(y.astype(np.float32))
        bs = cfg.training.batch_size
        callbacks = []
        if cfg.training.early_stopping_patience is not None:
            callbacks.append(EarlyStopping(monitor="val/loss", patience=cfg.training.early_stopping_patience))
        trainer = L.Trainer(max_epochs=cfg.training.num_epochs, accelerator="cpu", devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, deterministic=True, callbacks=callbacks)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(self.model_, TensorBatchLoader(x_t[tr], y_t[tr], bs, shuffle=True, seed=seed),
                        TensorBatchLoader(x_t[va], y_t[va], max(bs, 4096)))
        self.model_.eval()

    def _raw_score(self, X: np.ndarray) -> np.ndarray:
        return predict_scores(self.model_, torch.from_numpy(X.astype(np.float32))).astype(np.float64)

    def fit(self, X: Any, y: Any = None) -> "ClassifierDetector":
        if y is None:
            raise ValueError("the classifier is supervised: fit(X, y) needs labels")
        super().fit(X, y)
        self._use_model_threshold()
        return self

    def _use_model_threshold(self) -> None:
        """The classifier's own validation-chosen probability cut, on the standardised scale."""
        self.threshold_ = (float(self.model_.threshold) - self.center_) / self.scale_
        self.threshold_source_ = "the classifier's validation rows"
