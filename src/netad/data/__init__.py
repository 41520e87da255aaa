"""Reading labelled CSVs, fitted preprocessing, splits and the LightningDataModule."""

from netad.data.datamodule import NetworkDataModule, TensorBatchLoader
from netad.data.loading import LabelledTable, load_table
from netad.data.preprocessing import TabularPreprocessor
from netad.data.splits import FoldSplit, make_folds, split_test, split_val

__all__ = [
    "FoldSplit",
    "LabelledTable",
    "NetworkDataModule",
    "TabularPreprocessor",
    "TensorBatchLoader",
    "load_table",
    "make_folds",
    "split_test",
    "split_val",
]
