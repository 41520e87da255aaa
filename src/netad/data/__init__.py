"""Reading labelled CSVs, fitted preprocessing, splits and the LightningDataModule.

Names load lazily: the exported-model predictor uses the preprocessing without importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "NetworkDataModule": "netad.data.datamodule",
    "TensorBatchLoader": "netad.data.datamodule",
    "LabelledTable": "netad.data.loading",
    "load_table": "netad.data.loading",
    "TabularPreprocessor": "netad.data.preprocessing",
    "FoldSplit": "netad.data.splits",
    "make_folds": "netad.data.splits",
    "split_test": "netad.data.splits",
    "split_val": "netad.data.splits",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'netad.data' has no attribute {name!r}")
