"""The plain MLP, its LightningModule wrapper, autoencoders and novelty scorers.

Names load lazily: the exported-model predictor uses the plain modules without importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"MLP": "netad.models.mlp", "AnomalyClassifier": "netad.models.classifier",
          "load_classifier": "netad.models.classifier", "read_checkpoint": "netad.models.checkpoint"}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'netad.models' has no attribute {name!r}")
