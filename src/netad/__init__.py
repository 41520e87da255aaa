"""netad: supervised network-anomaly detection with PyTorch Lightning and honest cross-validation."""

__version__ = "0.1.0"
