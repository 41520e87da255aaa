"""``from netad.hub import NetadPredictor``, as model cards of earlier releases say: the same as
:mod:`netad.inference`."""

from netad.inference import ModelLoadError, NetadPredictor

__all__ = ["ModelLoadError", "NetadPredictor"]
