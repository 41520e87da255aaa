"""Reading and checking a training checkpoint without Lightning: scoring a saved model loads it with
``torch.load(weights_only=True)`` and never imports the LightningModule that wrote it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import torch

from netad.data.preprocessing import preprocessing_problem
from netad.errors import UserError
from netad.models.calibration import calibration_problem
from netad.models.mlp import network_problem

CHECKPOINT_KEY = "netad"
CHECKPOINT_FORMAT = 1
#: hyper-parameters a checkpoint may hold: AnomalyClassifier's arguments (a test holds the two lists equal)
HYPER_PARAMETERS = ("input_dim", "hidden_dims", "dropout", "activation", "learning_rate", "weight_decay", "optimizer",
                    "scheduler", "num_epochs", "class_weights", "threshold_method", "target_fpr", "seed")


def read_checkpoint(path: str | Path, trained_model: bool = False) -> dict[str, Any]:
    """Load a checkpoint file as a dict and check that it is one of ours (no pickled code). ``trained_model``:
    also check that it holds a whole trained model (see :func:`checkpoint_problem`), so that a damaged or
    crafted file is one UserError naming it, not a traceback from wherever its contents are first used."""
    path = Path(path)
    if path.is_dir():
        hint = (" (an exported model: predict.py and serve read it, test.py and upload_to_hub.py need the "
                "training checkpoint)") if (path / "config.json").is_file() else ""
        raise UserError(f"{path}: a folder, not a checkpoint file{hint}")
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, truncated, or holds objects we never write
        raise UserError(f"{path}: not a netad checkpoint ({type(exc).__name__})") from None
    ours = ckpt.get(CHECKPOINT_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(ours, dict) or ours.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a netad checkpoint (no '{CHECKPOINT_KEY}' section)")
    problem = checkpoint_problem(ckpt) if trained_model else None
    if problem:
        raise UserError(f"{path}: {problem}")
    return ckpt


def checkpoint_problem(ckpt: dict[str, Any]) -> Optional[str]:
    """What keeps a netad checkpoint dict from being a whole trained classifier (one line), or None: its
    hyper-parameters, weights of the shapes they give, the threshold and a preprocessing state of the
    network's input width."""
    hp, weights, ours = ckpt.get("hyper_parameters"), ckpt.get("state_dict"), ckpt[CHECKPOINT_KEY]
    if not isinstance(hp, dict):
        return "no 'hyper_parameters' section (the architecture): not a trained netad model"
    if not isinstance(weights, dict):
        return "no 'state_dict' section (the weights): not a trained netad model"
    unknown = [k for k in hp if k not in HYPER_PARAMETERS]
    if unknown:
        return f"hyper-parameter '{unknown[0]}' is not one of the classifier's"
    missing = [k for k in ("input_dim", "hidden_dims") if k not in hp]
    if missing:
        return f"hyper-parameter '{missing[0]}' is missing"
    problem = network_problem(hp, weights, "model.")
    if problem:
        return problem
    for key, shape in (("class_weights", (2,)), ("threshold", ())):
        if not isinstance(weights.get(key), torch.Tensor) or tuple(weights[key].shape) != shape:
            return f"weight {key} is missing or not of shape {list(shape)}"
    extra = [k for k in weights if not k.startswith("model.") and k not in ("class_weights", "threshold")]
    if extra:
        return f"weight {extra[0]} is not part of the classifier"
    threshold = ours.get("threshold")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not math.isfinite(threshold):
        return f"the threshold is missing or not a number ({threshold!r})"
    if not isinstance(ours.get("metadata", {}), dict) or not isinstance(ours.get("novelty") or {}, dict):
        return f"'{CHECKPOINT_KEY}' section: metadata and novelty must be mappings"
    if ours.get("calibration") is not None:
        problem = calibration_problem(ours["calibration"])
        if problem:
            return problem
    return preprocessing_problem(ours.get("preprocessor"), hp["input_dim"])
