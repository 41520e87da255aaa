"""The trained classifier behind the detector interface (an adapter), for side-by-side comparisons."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from netad.detectors.base import BaseDetector
from netad.inference import NetadPredictor


class ClassifierDetector(BaseDetector):
    """A trained model as a detector: ``ClassifierDetector(NetadPredictor.from_checkpoint(path))``.

    Training happens where train.py trains (:func:`netad.training.fit.fit_split`: best epoch, threshold on
    validation rows); ``fit(X)`` only standardises the model's scores on these rows like every detector's.
    ``X`` holds preprocessed rows in the model's feature order (``predictor.preprocessor.transform(frame)``);
    ``decision_function`` is the model's score of them, and ``threshold_`` its own threshold on that scale.
    """

    name = "classifier"
    supervised = True

    def __init__(self, predictor: Optional[NetadPredictor] = None, contamination: float = 0.05,
                 random_state: int = 0) -> None:
        super().__init__(contamination, random_state)
        self.predictor = predictor

    def _fit_supervised(self, X: np.ndarray, y: Any) -> None:
        if self.predictor is None:
            raise ValueError("the classifier adapter scores a trained model: ClassifierDetector(predictor), with a "
                             "NetadPredictor (e.g. NetadPredictor.from_checkpoint(path) of a train.py checkpoint)")
        width = self.predictor.config["architecture"]["input_dim"]
        if X.shape[1] != width:
            raise ValueError(f"expected {width} features (the model's preprocessed rows), got {X.shape[1]}")

    def _raw_score(self, X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.predictor.score_features(torch.from_numpy(X.astype(np.float32))).numpy().astype(np.float64)

    def fit(self, X: Any, y: Any = None) -> "ClassifierDetector":
        super().fit(X, y)
        # the model's own validation-chosen cut, on the standardised scale
        self.threshold_ = (self.predictor.threshold - self.center_) / self.scale_
        self.threshold_source_ = "the classifier's validation rows"
        return self
