"""``model.onnx``: the predictor's scoring of preprocessed features, checked against the predictor before it is kept."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netad.data.preprocessing import Encoded
from netad.errors import UserError
from netad.inference.predictor import NetadPredictor


class _FeatureScorer(torch.nn.Module):
    """The predictor's scoring of preprocessed rows, as one module for the ONNX exporter."""

    def __init__(self, predictor: NetadPredictor) -> None:
        super().__init__()
        self.net, self.novelty, self.predictor = predictor.net, predictor.novelty, predictor

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.predictor.score_features(features)


def _check_rows(predictor: NetadPredictor, n: int = 256) -> Encoded:
    """Seeded rows of the kind the preprocessing makes: scaled numbers around zero, 0/1 flags, and every
    position of each one-hot block (the unknown bucket included)."""
    rng = np.random.default_rng(0)
    state = predictor.preprocessor.state
    numeric, flags = len(state["numeric"]["columns"]), len(state["boolean"]["columns"])
    dense = np.hstack([rng.standard_normal((n, numeric)), rng.integers(0, 2, (n, flags))]).astype(np.float32)
    return Encoded(dense, [np.arange(n, dtype=np.int64) % size for size in predictor.preprocessor.block_sizes()])


def export_onnx(predictor: NetadPredictor, path: Path, tolerance: float = 1e-5) -> dict[str, Any]:
    """``model.onnx``: preprocessed float32 features in (the preprocessing is described in config.json),
    the score out. Kept only when onnxruntime's scores of preprocessed rows match the predictor's own
    scoring of the same rows (:meth:`NetadPredictor.score_encoded`, what predict.py and the API run)."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError("--onnx needs the onnx packages: pip install onnx onnxruntime onnxscript") from None
    if predictor.calibration is not None and predictor.calibration.method == "isotonic":
        raise UserError("--onnx: an isotonic calibration has no ONNX form here (its breakpoint lookup, torch's "
                        "searchsorted, is not an ONNX operator); train with calibration: temperature, or export "
                        "without --onnx")
    module = _FeatureScorer(predictor).eval()
    width = predictor.config["architecture"]["input_dim"]
    example = torch.zeros(2, width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's tracer advice
        torch.onnx.export(module, (example,), str(path), input_names=["features"], output_names=["score"],
                          dynamic_axes={"features": {0: "rows"}, "score": {0: "rows"}}, dynamo=False)
    rows = _check_rows(predictor)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": predictor.preprocessor.to_matrix(rows)})[0]
    expected = predictor.score_encoded(rows)[0]
    gap = float(np.abs(got - expected).max())
    if not gap <= tolerance:  # NaN too
        path.unlink(missing_ok=True)
        raise UserError(f"ONNX export differs from PyTorch by {gap:.2e} (> {tolerance:g}); not written")
    return {"file": path.name, "input": "features", "output": "score", "max_abs_diff_vs_pytorch": gap,
            "input_features": predictor.config["preprocessing"]["feature_names"],
            "note": "apply the preprocessing in config.json first; flag rows with score >= threshold"}
