"""``model.onnx``: the predictor's scoring of preprocessed features, checked against PyTorch before it is kept."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from netad.errors import UserError
from netad.inference.predictor import NetadPredictor


class _FeatureScorer(torch.nn.Module):
    """The predictor's scoring of preprocessed rows, as one module for the ONNX exporter."""

    def __init__(self, predictor: NetadPredictor) -> None:
        super().__init__()
        self.net, self.novelty, self.predictor = predictor.net, predictor.novelty, predictor

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.predictor.score_features(features)


def export_onnx(predictor: NetadPredictor, path: Path, tolerance: float = 1e-5) -> dict[str, Any]:
    """``model.onnx``: preprocessed float32 features in (the preprocessing is described in config.json),
    the score out. Checked against PyTorch with onnxruntime before it is kept."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError("--onnx needs the onnx packages: pip install onnx onnxruntime onnxscript") from None
    module = _FeatureScorer(predictor).eval()
    width = predictor.config["architecture"]["input_dim"]
    example = torch.zeros(2, width)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's tracer advice
        torch.onnx.export(module, (example,), str(path), input_names=["features"], output_names=["score"],
                          dynamic_axes={"features": {0: "rows"}, "score": {0: "rows"}}, dynamo=False)
    check = torch.randn(256, width, generator=torch.Generator().manual_seed(0))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"features": check.numpy()})[0]
    with torch.no_grad():
        expected = module(check).numpy()
    gap = float(abs(got - expected).max())
    if gap > tolerance:
        path.unlink(missing_ok=True)
        raise UserError(f"ONNX export differs from PyTorch by {gap:.2e} (> {tolerance:g}); not written")
    return {"file": path.name, "input": "features", "output": "score", "max_abs_diff_vs_pytorch": gap,
            "input_features": predictor.config["preprocessing"]["feature_names"],
            "note": "apply the preprocessing in config.json first; flag rows with score >= threshold"}
