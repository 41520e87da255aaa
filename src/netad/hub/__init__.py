"""The exported model (``NetadPredictor``), export from checkpoints and publishing to the Hugging Face Hub.

Names load lazily: upload_to_hub.py checks its token and the Hub through ``netad.hub.upload`` before
it imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"NetadPredictor": "netad.hub.predictor", "ModelLoadError": "netad.hub.predictor"}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'netad.hub' has no attribute {name!r}")
