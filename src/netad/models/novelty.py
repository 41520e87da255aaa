"""Novelty scores as plain torch modules, so a hybrid model stays one weights-only checkpoint.

A detector fitted on normal rows (PCA, k-means ensemble, autoencoder, VAE; see
``netad.detectors``) exports its fitted arrays; :class:`NoveltyScorer` recomputes the same
standardised score from them. The state is a dict of tensors and plain values: no pickle.

Two hybrid rules (:func:`hybrid_score`, the one function every scoring path calls):

- ``or`` (:func:`combine`): a row is an anomaly when the classifier's probability reaches its
  threshold **or** the novelty score reaches its own (chosen on validation normal rows at a
  false-positive budget), expressed as one score flagged at the classifier's threshold;
- ``stack``: logistic stacking, ``sigmoid(a * logit + b * asinh(z) + c)``, with weights learned on
  out-of-type held-out rows (``train.py --select``) and flagged at a threshold chosen on the
  validation rows' stacked scores. ``asinh`` keeps the novelty score's heavy tail from swamping the
  logit while staying monotone.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch import nn

from netad.models.autoencoder import AutoEncoder, VariationalAutoEncoder

NOVELTY_FORMAT = 1


class PCAReconstructionError(nn.Module):
    """Squared distance from the kept components; errors up to ``noise_floor`` (rounding noise) are 0."""

    def __init__(self, mean: torch.Tensor, components: torch.Tensor, noise_floor: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("mean", mean.double())
        self.register_buffer("components", components.double())
        self.register_buffer("noise_floor", torch.tensor(float(noise_floor), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x.double() - self.mean
        projected = centred @ self.components.T @ self.components
        error = ((centred - projected) ** 2).sum(dim=1)
        return torch.where(error <= self.noise_floor, torch.zeros_like(error), error)

    def feature_errors(self, x: torch.Tensor) -> torch.Tensor:
        """Each feature's part of the error (rows x features); rows within the noise floor get zeros."""
        centred = x.double() - self.mean
        parts = (centred - centred @ self.components.T @ self.components) ** 2
        return torch.where((parts.sum(dim=1) <= self.noise_floor)[:, None], torch.zeros_like(parts), parts)


class KMeansDistance(nn.Module):
    """Mean over k-means models of the (normalised) distance to the nearest centre."""

    def __init__(self, centres: Sequence[torch.Tensor], norms: Sequence[float]) -> None:
        super().__init__()
        self.n_models = len(centres)
        for i, c in enumerate(centres):
            self.register_buffer(f"centres_{i}", c.double())
        self.register_buffer("norms", torch.tensor(list(norms), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        dists = [torch.cdist(x, getattr(self, f"centres_{i}")).min(dim=1).values / self.norms[i]
                 for i in range(self.n_models)]
        return torch.stack(dists).mean(dim=0)

    def feature_errors(self, x: torch.Tensor) -> torch.Tensor:
        """Each feature's share of the squared distance to the nearest centre, averaged over the models."""
        x = x.double()
        shares = torch.zeros_like(x)
        for i in range(self.n_models):
            centres = getattr(self, f"centres_{i}")
            nearest = centres[torch.cdist(x, centres).argmin(dim=1)]
            shares += _shares((x - nearest) ** 2)
        return shares / self.n_models


class ReconstructionMSE(nn.Module):
    """Per-row mean squared reconstruction error of an (eval-mode) autoencoder or VAE."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        out = self.net(x)
        recon = out[0] if isinstance(out, tuple) else out
        return ((recon - x) ** 2).mean(dim=1).double()

    def feature_errors(self, x: torch.Tensor) -> torch.Tensor:
        """Each feature's squared reconstruction error (rows x features)."""
        x = x.float()
        out = self.net(x)
        recon = out[0] if isinstance(out, tuple) else out
        return ((recon - x) ** 2).double()


def _shares(parts: torch.Tensor) -> torch.Tensor:
    """Each row of non-negative parts divided by its sum (a row of zeros stays zeros)."""
    total = parts.sum(dim=1, keepdim=True)
    return torch.where(total > 0, parts / total.clamp(min=torch.finfo(parts.dtype).tiny), torch.zeros_like(parts))


class NoveltyScorer(nn.Module):
    """Standardised novelty score ``(raw - center) / scale`` and its threshold."""

    def __init__(self, raw: nn.Module, center: float, scale: float, threshold: float) -> None:
        super().__init__()
        self.raw = raw
        self.register_buffer("center", torch.tensor(center, dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float64))
        self.register_buffer("threshold", torch.tensor(threshold, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.raw(x) - self.center) / self.scale

    def feature_shares(self, x: torch.Tensor) -> torch.Tensor:
        """Each feature's share of the row's novelty (rows x features, each row summing to 1, or 0 for a row
        with no error at all): its part of the reconstruction error (PCA, autoencoder, VAE) or of the squared
        distance to the nearest centre (k-means)."""
        return _shares(self.raw.feature_errors(x))


def combine(probability: torch.Tensor, novelty: torch.Tensor, classifier_threshold: float,
            novelty_threshold: torch.Tensor) -> torch.Tensor:
    """The hybrid score: flagged (``>= classifier_threshold``) exactly when either part reaches its threshold.

    At or above the novelty cut a row scores at least the classifier threshold ``t``, rising towards 1
    with each training standard deviation of novelty: ``t + (1 - t) * (1 - exp(-(z - t_novelty)))``.
    Below it, novelty still lifts the row's rank (``sigmoid(z - t_novelty + logit(t))``) but is capped
    just under ``t``, so it never flags a row on its own. Holds for any ``t``, even 0 or 1.
    """
    p = probability.double()
    z = novelty.double()
    t32 = torch.as_tensor(classifier_threshold, dtype=torch.float32)
    t = t32.double()
    under_t = torch.nextafter(t32, torch.tensor(-float("inf"))).double()  # the largest float32 below t
    above = t + (1.0 - t).clamp(min=0.0) * (1.0 - torch.exp(-(z - novelty_threshold).clamp(min=0.0)))
    below = torch.sigmoid(z - novelty_threshold + torch.logit(t.clamp(1e-6, 1 - 1e-6))).clamp(max=under_t)
    combined = torch.where(z >= novelty_threshold, torch.maximum(p, above), torch.maximum(p, below))
    return combined.to(probability.dtype)


FUSION_RULES = ("or", "stack")
STACK_WEIGHTS = ("logit", "novelty", "bias")


def fusion_of(state: dict[str, Any]) -> Optional[dict[str, Any]]:
    """A novelty state's fusion (None: the ``or`` rule), checked; bad contents raise ValueError in one line."""
    fusion = state.get("fusion")
    if fusion is None:
        return None
    if not isinstance(fusion, dict) or fusion.get("rule") not in FUSION_RULES:
        raise ValueError(f"unknown fusion {fusion!r} (rules: {', '.join(FUSION_RULES)})")
    if fusion["rule"] == "or":
        return None
    weights = fusion.get("weights")
    if not isinstance(weights, dict) or set(weights) != set(STACK_WEIGHTS) or not all(
            isinstance(weights[k], (int, float)) and not isinstance(weights[k], bool) and math.isfinite(weights[k])
            for k in STACK_WEIGHTS):
        raise ValueError(f"stack fusion needs finite weights {', '.join(STACK_WEIGHTS)}")
    return fusion


def _asinh(x: torch.Tensor) -> torch.Tensor:
    """``asinh`` from operators every ONNX opset has (``aten::asinh`` has no ONNX export); exact to rounding."""
    a = x.abs().clamp(max=1e150)  # a * a stays finite in float64
    return torch.sign(x) * torch.log1p(a + a * a / (1.0 + torch.sqrt(a * a + 1.0)))


def stack_features(logit: torch.Tensor, novelty: torch.Tensor) -> torch.Tensor:
    """The stacker's inputs, float64 columns ``(logit, asinh(z))``."""
    return torch.stack([logit.double().reshape(-1), _asinh(novelty.double().reshape(-1))], dim=1)


def hybrid_score(logit: torch.Tensor, novelty: torch.Tensor, threshold: float, novelty_threshold: torch.Tensor,
                 fusion: Optional[dict[str, Any]] = None) -> torch.Tensor:
    """A hybrid's score (float32, flagged at ``score >= threshold``) from the classifier's logit and the
    standardised novelty score: :func:`combine` (``or``), or the ``stack`` fusion's logistic score."""
    if fusion is None:
        return combine(torch.sigmoid(logit.float()), novelty, threshold, novelty_threshold)
    w = fusion["weights"]
    features = stack_features(logit, novelty)
    stacked = w["logit"] * features[:, 0] + w["novelty"] * features[:, 1] + w["bias"]
    return torch.sigmoid(stacked).float().reshape(logit.shape)


def scorer_from_state(state: dict[str, Any]) -> NoveltyScorer:
    """Rebuild a :class:`NoveltyScorer` from :meth:`netad.detectors.base.BaseDetector.novelty_state` output."""
    if state.get("format") != NOVELTY_FORMAT:
        raise ValueError("novelty state from an unknown version")
    kind, tensors = state["kind"], state["tensors"]
    if kind == "pca":
        raw: nn.Module = PCAReconstructionError(tensors["mean"], tensors["components"], state.get("noise_floor", 0.0))
    elif kind == "kmeans":
        n = len(state["norms"])
        raw = KMeansDistance([tensors[f"centres_{i}"] for i in range(n)], state["norms"])
    elif kind in ("ae", "vae"):
        arch = state["architecture"]
        cls = VariationalAutoEncoder if kind == "vae" else AutoEncoder
        net = cls(arch["input_dim"], arch["hidden_dims"], arch["latent_dim"])
        net.load_state_dict(tensors)
        raw = ReconstructionMSE(net.eval())
    else:
        raise ValueError(f"no portable novelty scorer for {kind!r}")
    return NoveltyScorer(raw, state["center"], state["scale"], state["threshold"]).eval()
