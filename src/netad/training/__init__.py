"""One-split fitting, run folders, and the cross-validation and single-split runs built from them."""

from netad.training.cv import run_cv, run_single, train
from netad.training.fit import FitResult, fit_split
from netad.training.report import CVResult, SingleResult

__all__ = ["CVResult", "FitResult", "SingleResult", "fit_split", "run_cv", "run_single", "train"]
