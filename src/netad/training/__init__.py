"""One-split fitting and the cross-validation loop."""

from netad.training.cv import CVResult, run_cv, run_single
from netad.training.fit import FitResult, fit_split

__all__ = ["CVResult", "FitResult", "fit_split", "run_cv", "run_single"]
