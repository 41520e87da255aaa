"""Export a training checkpoint to a self-contained model folder: weights, config and model card."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional

from netad.errors import NetadWarning
from netad.export.card import cv_summary_of, evaluation_card_of, stored_values, identifier_columns, model_card
from netad.export.onnx import export_onnx
from netad.inference.predictor import NetadPredictor, artifact_from_checkpoint
from netad.models.checkpoint import CHECKPOINT_KEY, read_checkpoint


class PublishedDataWarning(NetadWarning):
    """An export publishes training values that look like identifiers (IP addresses, mostly distinct values)."""


def export_checkpoint(checkpoint: str | Path, output: str | Path, *, test: Optional[dict[str, Any]] = None,
                      onnx: bool = False) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` (and ``model.onnx``) to ``output``.

    Text columns that look like identifiers get a :class:`PublishedDataWarning` each: the export publishes
    their training values."""
    ckpt = read_checkpoint(checkpoint, trained_model=True)
    config, weights = artifact_from_checkpoint(ckpt)
    predictor = NetadPredictor.from_parts(config, weights, source=str(checkpoint))
    for col, reason in identifier_columns(config["preprocessing"]).items():
        n = stored_values(config["preprocessing"]["categorical"], col)
        warnings.warn(PublishedDataWarning(
            f"column '{col}' looks like an identifier ({reason}): the export publishes {n} of its training values "
            "(config.json), and such a column rarely generalises; consider data.drop_columns"), stacklevel=2)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    if onnx:
        config["onnx"] = export_onnx(predictor, out / "model.onnx")
    else:
        (out / "model.onnx").unlink(missing_ok=True)  # never ship a stale one from an earlier export
    predictor.save_pretrained(out)
    cv_summary, cv_verdict = cv_summary_of(config, ckpt)
    leakage = ckpt[CHECKPOINT_KEY].get("metadata", {}).get("leakage")
    (out / "README.md").write_text(model_card(config, cv_summary, cv_verdict, test, leakage=leakage,
                                              evaluation=evaluation_card_of(ckpt)))
    return out
