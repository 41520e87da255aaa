"""Anomaly detectors with one interface (see :mod:`netad.detectors.base`), and a registry by name."""

from __future__ import annotations

from typing import Any

from netad.detectors.base import BaseDetector, NotFittedError, load_detector
from netad.detectors.classic import (
    COPODDetector,
    EllipticEnvelopeDetector,
    HBOSDetector,
    IsolationForestDetector,
    KMeansEnsembleDetector,
    LOFDetector,
    OneClassSVMDetector,
    PCADetector,
)
from netad.detectors.classifier import ClassifierDetector
from netad.detectors.deep import AutoEncoderDetector, VAEDetector

#: unsupervised detectors by name, in the order comparisons list them
DETECTORS: dict[str, type[BaseDetector]] = {
    cls.name: cls
    for cls in (
        IsolationForestDetector,
        LOFDetector,
        OneClassSVMDetector,
        EllipticEnvelopeDetector,
        PCADetector,
        KMeansEnsembleDetector,
        HBOSDetector,
        COPODDetector,
        AutoEncoderDetector,
        VAEDetector,
    )
}


def make_detector(name: str, **params: Any) -> BaseDetector:
    """A new detector by registry name (``classifier`` for the adapter of a trained model, ``predictor=``)."""
    if name == ClassifierDetector.name:
        return ClassifierDetector(**params)
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose from {', '.join(DETECTORS)} or classifier")
    return DETECTORS[name](**params)


__all__ = ["BaseDetector", "ClassifierDetector", "DETECTORS", "NotFittedError", "load_detector", "make_detector"]
