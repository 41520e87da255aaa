"""Calibration of the classifier's probability, fitted on validation rows after training (``calibration:``).

- ``temperature``: ``sigmoid(logit / T)``, one positive number fitted by minimising the validation rows'
  log loss. Strictly monotone, so every ranking (ROC AUC, PR AUC) is exactly that of the raw model.
- ``isotonic``: scikit-learn's isotonic regression of the validation labels on the raw probability, applied
  as its piecewise-linear map (``np.interp`` over its breakpoints). Non-decreasing: it can merge close scores
  into ties, so ranking metrics may move slightly.

The state is a dict of tensors and plain values (``{"method", "tensors"}``), so it travels in the weights-only
checkpoint and in ``model.safetensors``; :class:`Calibration` applies it with torch alone.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

CALIBRATION_METHODS = ("temperature", "isotonic")


class Calibration(nn.Module):
    """The logit -> calibrated probability map of a fitted state."""

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__()
        self.method = state["method"]
        tensors = state["tensors"]
        if self.method == "temperature":
            self.register_buffer("temperature", tensors["temperature"].double().reshape(()))
        else:
            self.register_buffer("x", tensors["x"].double().reshape(-1))
            self.register_buffer("y", tensors["y"].double().reshape(-1))

    def forward(self, logit: torch.Tensor) -> torch.Tensor:
        if self.method == "temperature":
            return torch.sigmoid(logit.double() / self.temperature).to(torch.float32)
        return _interp(torch.sigmoid(logit.double()), self.x, self.y).to(torch.float32)


def _interp(p: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``np.interp(p, x, y)`` in torch: linear between breakpoints, flat beyond the ends."""
    if len(x) == 1:
        return y.expand_as(p).clone()
    i = torch.searchsorted(x, p.contiguous()).clamp(1, len(x) - 1)
    x0, x1, y0, y1 = x[i - 1], x[i], y[i - 1], y[i]
    t = ((p - x0) / (x1 - x0).clamp(min=torch.finfo(torch.float64).tiny)).clamp(0.0, 1.0)
    return y0 + t * (y1 - y0)


def calibration_problem(state: Any) -> Optional[str]:
    """What makes a stored calibration state unusable (one line), or None."""
    if not isinstance(state, dict) or state.get("method") not in CALIBRATION_METHODS:
        return f"calibration method is not one of {', '.join(CALIBRATION_METHODS)}"
    tensors = state.get("tensors")
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        return "calibration tensors are missing"
    if state["method"] == "temperature":
        t = tensors.get("temperature")
        if t is None or t.numel() != 1 or not (math.isfinite(float(t)) and float(t) > 0):
            return "calibration temperature is missing or not a positive number"
        return None
    x, y = tensors.get("x"), tensors.get("y")
    if x is None or y is None or x.ndim != 1 or x.shape != y.shape or not len(x):
        return "isotonic calibration needs breakpoints x and y of one equal length"
    xd, yd = x.double(), y.double()
    if not (torch.isfinite(xd).all() and torch.isfinite(yd).all()) or (xd.diff() <= 0).any() \
            or (yd.diff() < 0).any() or yd.min() < 0 or yd.max() > 1:
        return "isotonic calibration breakpoints are not increasing, or its values not in [0, 1]"
    return None


def fit_calibration(method: str, logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The state of ``method`` fitted on validation logits and 0/1 labels (needs both classes)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if method == "temperature":
        from scipy.optimize import minimize_scalar  # fitting only: scoring never loads scipy

        def log_loss(log_t: float) -> float:
            z = logits / math.exp(log_t)
            return float(np.mean(np.logaddexp(0.0, z) - labels * z))

        best = minimize_scalar(log_loss, bounds=(-6.0, 6.0), method="bounded", options={"xatol": 1e-6})
        return {"method": method, "tensors": {"temperature": torch.tensor([math.exp(best.x)], dtype=torch.float64)}}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        p = 1.0 / (1.0 + np.exp(-logits))
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, labels)
        return {"method": method, "tensors": {"x": torch.tensor(iso.X_thresholds_, dtype=torch.float64),
                                              "y": torch.tensor(iso.y_thresholds_, dtype=torch.float64)}}
    raise ValueError(f"calibration {method!r} is not one of {', '.join(CALIBRATION_METHODS)}")
