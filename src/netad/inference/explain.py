"""Why a row scored as it did: per-column contributions, from the same predictor every scoring path uses.

The classifier's part is attributed with Captum (DeepLift's rescale rule for ReLU-like networks, Integrated
Gradients for the rest) against the model's baseline: a typical normal training row, stored with the fitted
preprocessing (``preprocessing.baseline``), so an exported model explains without Lightning or its training
data. Attributions are computed on the preprocessed features, in logit units, and summed back to the input
columns (a one-hot block is its column again; a log-scaled count is its column): for each row they add up to
``logit(row) - logit(baseline)``, up to the method's convergence error (:attr:`Explanation.delta`).

For a hybrid the novelty part explains itself: each column's share of the row's reconstruction error (PCA,
autoencoder, VAE) or of its squared distance to the nearest k-means centre. :attr:`Explanation.explained_by`
names the part that fired: under ``or``, the novelty part when only it reached its threshold, the classifier
otherwise; under ``stack``, the part that lifted the fused logit more above the baseline's.

Captum is imported when the first :class:`Explainer` is made, not by scoring.
"""

from __future__ import annotations

import copy
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from netad.errors import UserError
from netad.models.novelty import stack_features

METHODS = ("deeplift", "integrated_gradients")
_DEEPLIFT_ACTIVATIONS = ("relu", "leaky_relu", "elu", "tanh")  # nonlinearities Captum's DeepLift rescales
IG_STEPS = 32
_CHUNK_ROWS = {"deeplift": 16_384, "integrated_gradients": 2_048}  # IG runs IG_STEPS copies of each row


def default_method(activation: str) -> str:
    """DeepLift where Captum has a rule for the network's activation (exact to rounding for ReLU networks),
    Integrated Gradients otherwise."""
    return "deeplift" if activation in _DEEPLIFT_ACTIVATIONS else "integrated_gradients"


def explanation_info(predictor: Any) -> Optional[dict[str, Any]]:
    """What ``GET /model`` and the model card say about explanations (None: the model holds no baseline).
    Needs no Captum."""
    if predictor.preprocessor.state.get("baseline") is None:
        return None
    method = default_method(predictor.config["architecture"].get("activation", "relu"))
    return {"method": method, "target": "the classifier's logit (contributions add up to logit - baseline logit)",
            "baseline": "a typical normal training row: median numbers, most frequent flags and categories",
            "novelty": "each column's share of the novelty score" if predictor.novelty is not None else None,
            **({"steps": IG_STEPS} if method == "integrated_gradients" else {})}


@dataclass
class Explanation:
    """Per-row, per-column contributions of a batch of rows."""

    columns: list[str]                  # the model's columns (numeric, boolean, text), as contributions' columns
    contributions: np.ndarray           # rows x columns: the explaining part's (logit units, or novelty shares)
    classifier: np.ndarray              # rows x columns: the classifier's logit attributions
    novelty: Optional[np.ndarray]       # rows x columns: the novelty part's shares (hybrid), else None
    explained_by: Optional[np.ndarray]  # per row "classifier" or "novelty" (hybrid), else None
    delta: np.ndarray                   # per row: sum of classifier attributions minus (logit - baseline logit)

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(column index, contribution) of each row's ``k`` largest contributions by size, largest first."""
        order = np.argsort(-np.abs(self.contributions), axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(self.contributions, order, axis=1)


class Explainer:
    """Explains the rows a :class:`~netad.inference.NetadPredictor` scores."""

    def __init__(self, predictor: Any, method: Optional[str] = None) -> None:
        pre = predictor.preprocessor
        baseline = pre.state.get("baseline")
        if baseline is None:
            raise UserError("this model holds no explanation baseline (it was trained before netad explained "
                            "scores): train it again to explain its scores")
        activation = predictor.config["architecture"].get("activation", "relu")
        self.method = method or default_method(activation)
        if self.method not in METHODS:
            raise UserError(f"explanation method {self.method!r} is not one of {', '.join(METHODS)}")
        self.predictor, self.pre = predictor, pre
        self.columns = pre.model_columns()
        self.starts = pre.column_starts()
        self.baseline = torch.tensor(baseline, dtype=torch.float32).reshape(1, -1)
        with torch.no_grad():
            self.baseline_logit = predictor.net(self.baseline)
            self.baseline_novelty = predictor.novelty(self.baseline) if predictor.novelty is not None else None
        self._local = threading.local()  # Captum hooks its model: one copy of the network per thread
        import captum.attr  # noqa: F401 - loaded once here, not on the first row

    def _attributor(self) -> Any:
        """A Captum attributor over this thread's copy of the network. Made afresh for each batch: a DeepLift
        object keeps the hook handles of every call it has made (captum 0.9) and walks them all on the next,
        so a long-lived one gets slower with each call. Making one costs microseconds; the network copy is kept."""
        net = getattr(self._local, "net", None)
        if net is None:
            net = self._local.net = copy.deepcopy(self.predictor.net).eval()
        from captum.attr import DeepLift, IntegratedGradients

        return DeepLift(net) if self.method == "deeplift" else IntegratedGradients(net)

    def _features(self, x: torch.Tensor) -> np.ndarray:
        """Per-feature logit attributions (rows x features)."""
        attributor = self._attributor()
        rows, parts = _CHUNK_ROWS[self.method], []
        with warnings.catch_warnings():  # Captum says each time that it hooks the activations
            warnings.filterwarnings("ignore", message=r"Setting forward, backward hooks", category=UserWarning)
            for start in range(0, len(x), rows):
                chunk = x[start:start + rows].detach().requires_grad_()
                if self.method == "deeplift":
                    attr = attributor.attribute(chunk, baselines=self.baseline)
                else:
                    attr = attributor.attribute(chunk, baselines=self.baseline, n_steps=IG_STEPS)
                parts.append(attr.detach())
        return torch.cat(parts).numpy() if parts else np.zeros(tuple(x.shape), dtype=np.float32)

    def per_column(self, values: np.ndarray) -> np.ndarray:
        """Per-feature values (rows x features) summed per model column."""
        if not len(self.starts):
            return np.zeros((len(values), 0), dtype=np.float32)
        return np.add.reduceat(np.asarray(values, dtype=np.float64), self.starts, axis=1).astype(np.float32)

    def explain_encoded(self, enc: Any) -> Explanation:
        """Rows already encoded by the predictor's preprocessing."""
        return self.explain_features(torch.from_numpy(self.pre.to_matrix(enc)))

    def explain_features(self, x: torch.Tensor) -> Explanation:
        """Preprocessed rows (float32, ``feature_names`` order)."""
        x = x.float()
        with torch.enable_grad():
            attr = self._features(x)
        predictor = self.predictor
        with torch.no_grad():
            logit = predictor.net(x)
        # completeness: what the attributions leave unexplained of logit(row) - logit(baseline)
        delta = attr.sum(axis=1, dtype=np.float64) - (logit.double() - self.baseline_logit.double()).numpy()
        classifier = self.per_column(attr)
        if predictor.novelty is None:
            return Explanation(self.columns, classifier, classifier, None, None, delta)
        with torch.no_grad():
            z = predictor.novelty(x)
            novelty = self.per_column(predictor.novelty.feature_shares(x).numpy())
            if predictor.fusion is None:  # "or": the part that reached its own threshold
                classifier_fired = torch.sigmoid(logit.float()).numpy() >= predictor.threshold
                novelty_fired = (z >= predictor.novelty.threshold).numpy()
                by_novelty = novelty_fired & ~classifier_fired
            else:  # "stack": the part whose term lifted the fused logit more above the baseline's
                w = predictor.fusion["weights"]
                base = stack_features(self.baseline_logit, self.baseline_novelty)[0]
                terms = stack_features(logit, z) - base
                lift = w["novelty"] * terms[:, 1]
                by_novelty = ((lift > 0) & (lift > w["logit"] * terms[:, 0])).numpy()
        explained_by = np.where(by_novelty, "novelty", "classifier")
        contributions = np.where(by_novelty[:, None], novelty, classifier)
        return Explanation(self.columns, contributions, classifier, novelty, explained_by, delta)
