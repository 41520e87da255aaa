"""The plain MLP and its LightningModule wrapper."""

from netad.models.classifier import AnomalyClassifier, load_classifier, read_checkpoint
from netad.models.mlp import MLP

__all__ = ["MLP", "AnomalyClassifier", "load_classifier", "read_checkpoint"]
