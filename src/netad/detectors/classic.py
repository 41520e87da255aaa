"""Detectors built on scikit-learn and pyod estimators: the algorithm is theirs, the interface ours."""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.covariance import EllipticEnvelope
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.svm import OneClassSVM

from netad.detectors.base import BaseDetector


NOISE_SHARE = 1e-12  # PCA reconstruction errors below this share of the rows' spread are rounding noise


def _subsample(X: np.ndarray, max_rows: Optional[int], seed: int) -> np.ndarray:
    if max_rows is None or X.shape[0] <= max_rows:
        return X
    rows = np.random.default_rng(seed).choice(X.shape[0], max_rows, replace=False)
    return X[np.sort(rows)]


class IsolationForestDetector(BaseDetector):
    """scikit-learn's Isolation Forest: short average path length = anomalous."""

    name = "iforest"

    def __init__(self, n_estimators: int = 200, max_samples: str | int = "auto", contamination: float = 0.05,
                 random_state: int = 0) -> None:
        super().__init__(contamination, random_state)
        self.n_estimators, self.max_samples = n_estimators, max_samples

    def _fit(self, X: np.ndarray) -> None:
        self.model_ = IsolationForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                                      random_state=self.random_state, n_jobs=1).fit(X)

    def _raw_score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(X)


class LOFDetector(BaseDetector):
    """scikit-learn's Local Outlier Factor in novelty mode (fitted rows are the reference)."""

    name = "lof"

    def __init__(self, n_neighbors: int = 20, max_rows: Optional[int] = 20000, contamination: float = 0.05,
                 random_state: int = 0) -> None:
        super().__init__(contamination, random_state)
        self.n_neighbors, self.max_rows = n_neighbors, max_rows

    def _fit(self, X: np.ndarray) -> None:
        X = _subsample(X, self.max_rows, self.random_state)
        self.model_ = LocalOutlierFactor(n_neighbors=min(self.n_neighbors, X.shape[0] - 1), novelty=True).fit(X)

    def _raw_score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(X)


class OneClassSVMDetector(BaseDetector):
    """scikit-learn's One-Class SVM (RBF). Its fit is quadratic in rows: ``max_rows`` caps them."""

    name = "ocsvm"

    def __init__(self, nu: float = 0.05, gamma: str | float = "scale", max_rows: Optional[int] = 5000,
                 contamination: float = 0.05, random_state: int = 0) -> None:
        super().__init__(contamination, random_state)
        self.nu, self.gamma, self.max_rows = nu, gamma, max_rows

    def _fit(self, X: np.ndarray) -> None:
        self.model_ = OneClassSVM(nu=self.nu, gamma=self.gamma).fit(_subsample(X, self.max_rows, self.random_state))

    def _raw_score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(X)


class EllipticEnvelopeDetector(BaseDetector):
    """scikit-learn's Elliptic Envelope: Mahalanobis distance under a robust (MCD) covariance.

    One-hot and near-constant columns make the covariance singular; the envelope is fitted on
    the leading principal components of the training rows (``n_components``) instead.
    """

    name = "elliptic"

    def __init__(self, n_components: int = 10, max_rows: Optional[int] = 10000, contamination: float = 0.05,
                 random_state: int = 0) -> None:
        super().__init__(contamination, random_state)
        self.n_components, self.max_rows = n_components, max_rows

    def _fit(self, X: np.ndarray) -> None:
        X = _subsample(X, self.max_rows, self.random_state)
        k = max(1, min(self.n_components, X.shape[1], X.shape[0] - 1))
        self.pca_ = PCA(n_components=k, random_state=self.random_state).fit(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "covariance matrix ... not full rank" on tiny fits
            warnings.simplefilter("ignore", UserWarning)
            self.model_ = EllipticEnvelope(random_state=self.random_state).fit(self.pca_.transform(X))

    def _raw_score(self, X: np.ndarray) -> np.ndarray:
        return self.model_.mahalanobis(self.pca_.transform(X))


class PCADetector(BaseDetector):
    """Reconstruction error after projecting on the principal components that keep ``variance`` of normal rows.

    Errors below ``noise_floor_`` (a 1e-12 share of the training rows' mean squared distance from their
    mean) are rounding noise, not distance: when the kept components span the training rows, every
    normal row would otherwise get a random tiny error that depends on the CPU's arithmetic. They score 0.
    """

    name = "pca"

    def __init__(self, variance: float = 0.95, contamination: float = 0.05, random_state: int = 0) -> None:
        super().__init__(contamination, random_state)
        self.variance = variance

    portable = True

    def _fit(self, X: np.ndarray) -> None:
        pca = PCA(svd_solver="full", random_state=self.random_state).fit(X)
        kept = int(np.searchsorted(np.cumsum(pca.explained_variance_ratio_), self.variance) + 1)
        # keeping every direction would reconstruct any row exactly: leave at least one out
        kept = max(1, min(kept, X.shape[1] - 1, len(pca.components_)))
        self.mean_, self.components_ = pca.mean_, pca.components_[:kept]
        self.noise_floor_ = NOISE_SHARE * float(np.mean(np.square(X - self.mean_).sum(axis=1)))

    def _raw_score(self, X: np.ndarray) -> np.ndarray:
        centred = X - self.mean_
        error = np.square(centred - centred @ self.components_.T @ self.components_).sum(axis=1)
        return np.where(error <= self.noise_floor_, 0.0, error)

    def _portable_state(self) -> dict:
        return {"noise_floor": self.noise_floor_,
                "tensors": {"mean": torch.from_numpy(self.mean_), "components": torch.from_numpy(self.components_)}}


class KMeansEnsembleDetector(BaseDetector):
    """Distance to the nearest k-means centre, averaged over models with different k and seeds.

    scikit-learn fits each k-means; only the averaging (a line) is written here. Distances are
    divided by each model's mean training distance so no single k dominates the average.
    """

    name = "kmeans"
    portable = True

    def __init__(self, n_clusters: tuple[int, ...] = (5, 10, 20, 30, 50), contamination: float = 0.05,
                 random_state: int = 0) -> None:
        super().__init__(contamination, random_state)
        self.n_clusters = tuple(n_clusters)

    def _fit(self, X: np.ndarray) -> None:
        self.models_, self.norms_ = [], []
        for i, k in enumerate(self.n_clusters):
            km = KMeans(n_clusters=min(k, X.shape[0]), n_init=3, random_state=self.random_state + i).fit(X)
            self.models_.append(km)
            self.norms_.append(float(km.transform(X).min(axis=1).mean()) or 1.0)

    def _raw_score(self, X: np.ndarray) -> np.ndarray:
        return np.mean([km.transform(X).min(axis=1) / n for km, n in zip(self.models_, self.norms_)], axis=0)

    def _portable_state(self) -> dict:
        return {"norms": list(self.norms_),
                "tensors": {f"centres_{i}": torch.from_numpy(km.cluster_centers_.astype(np.float64))
                            for i, km in enumerate(self.models_)}}


class HBOSDetector(BaseDetector):
    """pyod's HBOS: histogram-based outlier score, one histogram per feature (fast, assumes independence)."""

    name = "hbos"

    def __init__(self, n_bins: int = 10, alpha: float = 0.1, contamination: float = 0.05, random_state: int = 0) -> None:
        super().__init__(contamination, random_state)
        self.n_bins, self.alpha = n_bins, alpha

    def _fit(self, X: np.ndarray) -> None:
        from pyod.models.hbos import HBOS

        self.model_ = HBOS(n_bins=self.n_bins, alpha=self.alpha, contamination=self.contamination).fit(X)

    def _raw_score(self, X: np.ndarray) -> np.ndarray:
        return self.model_.decision_function(X)


class COPODDetector(BaseDetector):
    """pyod's COPOD: copula-based tail probabilities, no parameters to tune."""

    name = "copod"

    def _fit(self, X: np.ndarray) -> None:
        from pyod.models.copod import COPOD

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # skewness of constant columns (pyod maps it to 0)
            self.model_ = COPOD(contamination=self.contamination).fit(X)

    def _raw_score(self, X: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return self.model_.decision_function(X)
