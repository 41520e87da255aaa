"""The exported model (``NetadPredictor``), export from checkpoints and publishing to the Hugging Face Hub."""

from netad.hub.predictor import NetadPredictor

__all__ = ["NetadPredictor"]
