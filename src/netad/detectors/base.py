"""One interface for every detector (after pyod's BaseDetector).

``fit(X, y=None)`` returns self; ``decision_function(X)``: higher means more anomalous;
``predict(X)``: 1 where the score reaches ``threshold_``. Subclasses implement only
``_fit(X_normal)`` and ``_raw_score(X)``; the base class does everything else once:

- unsupervised detectors learn normal traffic: given labels, they fit on the ``y == 0`` rows only;
- scores are standardised with the mean and std of the training scores, so every detector
  speaks the same scale (0 = a typical training row, 3 = three std above it);
- ``threshold_`` starts as the ``1 - contamination`` percentile of the training scores and
  ``calibrate(X_val, y_val)`` re-chooses it on validation rows (never on test rows).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from netad.errors import NetadWarning, UserError
from netad.metrics import choose_threshold, just_above

DETECTOR_FORMAT = 1


class NotFittedError(RuntimeError):
    """A detector was used before ``fit``."""


def as_matrix(X: Any) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-d array of rows x features, got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError("no rows to fit or score")
    if not np.isfinite(X).all():
        raise ValueError("rows hold NaN or infinite values: preprocess them first")
    return X


def fpr_cut(normal_scores: np.ndarray, fpr: float) -> float:
    """A cut that flags at most ``fpr`` of these normal rows (``score >= cut`` is flagged), as many as
    ties allow. It lies midway between the last row it leaves and the first it flags, so the rounding
    differences between two routes to the same score (numpy here, torch in a checkpoint) move no row
    across it."""
    ordered = np.sort(np.asarray(normal_scores, dtype=np.float64))
    n = len(ordered)
    allowed = int(np.floor(fpr * n + 1e-9))
    # the lowest flagged row: above every row tied with the highest one left unflagged
    first = n if allowed == 0 else int(np.searchsorted(ordered, ordered[n - allowed - 1], side="right"))
    if first >= n:  # flag none: clear of the top score by more than rounding
        top = ordered[-1]
        return max(just_above(top), float(top + 1e-9 * abs(top)))
    low, high = ordered[first - 1], ordered[first]
    mid = low + (high - low) / 2
    return float(mid if low < mid < high else high)


class BaseDetector:
    """Common logic; ``name`` is the registry key (``iforest``, ``lof``, ...)."""

    name = "base"
    supervised = False

    def __init__(self, contamination: float = 0.05, random_state: int = 0) -> None:
        if not 0.0 < contamination < 0.5:
            raise ValueError(f"contamination must be in (0, 0.5), got {contamination}")
        self.contamination = contamination
        self.random_state = random_state

    # -------------------------------------------------------------- to override
    def _fit(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _raw_score(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # ------------------------------------------------------------------ interface
    def fit(self, X: Any, y: Any = None) -> "BaseDetector":
        X = as_matrix(X)
        if y is not None and not self.supervised:
            y = np.asarray(y)
            X = X[y == 0]  # learn what normal traffic looks like
            if X.shape[0] == 0:
                raise ValueError("no normal rows (y == 0) to fit on")
        self.n_features_in_ = X.shape[1]
        if self.supervised:
            self._fit_supervised(X, np.asarray(y))
        else:
            self._fit(X)
        raw = np.asarray(self._raw_score(X), dtype=np.float64)
        self.center_ = float(np.mean(raw))
        spread = float(np.std(raw))
        self.scale_ = spread if spread > 1e-12 else 1.0
        self.train_scores_ = (raw - self.center_) / self.scale_
        self.threshold_ = float(np.quantile(self.train_scores_, 1.0 - self.contamination))
        self.threshold_source_ = f"training-score percentile {100 * (1 - self.contamination):g}"
        self.degenerate_ = None
        if np.ptp(raw) == 0:  # the percentile is the tie itself, which would flag every row: above it instead
            self.threshold_ = fpr_cut(self.train_scores_, self.contamination)
            self._degenerate(f"{self.name}: every normal training row gets the same score")
        return self

    def _degenerate(self, what: str) -> None:
        """Note (and warn) that the scores cannot rank normal rows: its threshold then sits above
        them all, so it flags only rows unlike every one of them."""
        self.degenerate_ = (f"{what}: the detector cannot rank normal traffic (its scores are ties or "
                            f"rounding noise), so it flags no normal row and only rows unlike all of them")
        warnings.warn(NetadWarning(self.degenerate_), stacklevel=3)

    def _fit_supervised(self, X: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(X) first")

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly scores, standardised on the training scores: higher means more anomalous."""
        self._check_fitted()
        X = as_matrix(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features, got {X.shape[1]}")
        return (np.asarray(self._raw_score(X), dtype=np.float64) - self.center_) / self.scale_

    def predict(self, X: Any) -> np.ndarray:
        """1 (anomaly) where the score reaches ``threshold_``, else 0."""
        return (self.decision_function(X) >= self.threshold_).astype(np.int64)

    def calibrate(self, X_val: Any, y_val: Any, method: str = "max_f1", target_fpr: float = 0.01) -> "BaseDetector":
        """Choose ``threshold_`` on validation rows: max F1, or a false-positive budget.

        With normal rows only (no anomalies to trade against) the cut keeps ``target_fpr`` of
        them above it.
        """
        scores = self.decision_function(X_val)
        y_val = np.asarray(y_val, dtype=np.int64)
        if y_val.min() == y_val.max():
            if y_val[0] == 1:
                raise ValueError("validation rows are all anomalies: cannot place a threshold")
            self.threshold_ = fpr_cut(scores, target_fpr)
            method = "target_fpr"
            if len(scores) > 1 and np.ptp(scores) == 0 and getattr(self, "degenerate_", None) is None:
                self._degenerate(f"{self.name}: every normal validation row gets the same score")
        else:
            self.threshold_ = choose_threshold(scores, y_val, method, target_fpr, upper=None)
        self.threshold_source_ = f"validation rows ({method})"
        return self

    # ------------------------------------------------------------ hybrid export
    portable = False  # True where _portable_state exists: the state a torch module can rebuild

    def _portable_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def novelty_state(self) -> dict[str, Any]:
        """Tensors and plain values from which :func:`netad.models.novelty.scorer_from_state`
        recomputes ``decision_function`` inside a weights-only checkpoint (hybrid models)."""
        from netad.models.novelty import NOVELTY_FORMAT

        self._check_fitted()
        if not self.portable:
            raise ValueError(f"{self.name} cannot be stored in a checkpoint; use one of pca, kmeans, ae, vae")
        return {"format": NOVELTY_FORMAT, "kind": self.name, "center": self.center_, "scale": self.scale_,
                "threshold": self.threshold_, "degenerate": getattr(self, "degenerate_", None), "params": {k: (list(v) if isinstance(v, tuple) else v)
                                                         for k, v in self.get_params().items()},
                **self._portable_state()}

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> Path:
        """Write the fitted detector to one file (joblib: a pickle, so load only files you made)."""
        import joblib

        from netad.io import atomic_target

        self._check_fitted()
        path = Path(path)
        with atomic_target(path) as tmp:
            joblib.dump({"format": DETECTOR_FORMAT, "name": self.name, "detector": self}, tmp)
        return path

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


def load_detector(path: str | Path) -> BaseDetector:
    """A detector written by :meth:`BaseDetector.save`."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise UserError(f"detector file not found: {path}")
    try:
        saved = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise UserError(f"{path}: not a netad detector file ({type(exc).__name__})") from None
    if not isinstance(saved, dict) or saved.get("format") != DETECTOR_FORMAT or \
            not isinstance(saved.get("detector"), BaseDetector):
        raise UserError(f"{path}: not a netad detector file")
    return saved["detector"]
