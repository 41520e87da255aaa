"""Autoencoder detectors: LightningModules trained on normal rows, scored by reconstruction error."""

from __future__ import annotations

import warnings

import lightning as L
import numpy as np
import torch

from netad.data.datamodule import TensorBatchLoader
from netad.detectors.base import BaseDetector
from netad.lightning_setup import quiet_lightning
from netad.models.autoencoder import AutoEncoder, VariationalAutoEncoder, reconstruction_error
from netad.models.reconstruction import ReconstructionModule


class AutoEncoderDetector(BaseDetector):
    name = "ae"
    portable = True

    def __init__(self, hidden_dims: tuple[int, ...] = (64, 32), latent_dim: int = 8, epochs: int = 20,
                 batch_size: int = 256, learning_rate: float = 1e-3, contamination: float = 0.05,
                 random_state: int = 0) -> None:
        super().__init__(contamination, random_state)
        self.hidden_dims, self.latent_dim = tuple(hidden_dims), latent_dim
        self.epochs, self.batch_size, self.learning_rate = epochs, batch_size, learning_rate

    def _net(self, input_dim: int) -> torch.nn.Module:
        return AutoEncoder(input_dim, self.hidden_dims, self.latent_dim)

    def _fit(self, X: np.ndarray) -> None:
        quiet_lightning()
        torch.manual_seed(self.random_state)
        self.net_ = self._net(X.shape[1])
        module = ReconstructionModule(self.net_, self.learning_rate)
        x = torch.from_numpy(X.astype(np.float32))
        loader = TensorBatchLoader(x, torch.zeros(len(x)), self.batch_size, shuffle=True, seed=self.random_state)
        trainer = L.Trainer(max_epochs=self.epochs, accelerator="cpu", devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            deterministic=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Lightning's advice on workers and logging intervals
            trainer.fit(module, loader)
        self.net_.eval()

    def _raw_score(self, X: np.ndarray) -> np.ndarray:
        return reconstruction_error(self.net_, torch.from_numpy(X.astype(np.float32))).numpy().astype(np.float64)

    def _portable_state(self) -> dict:
        return {"architecture": {"input_dim": self.n_features_in_, "hidden_dims": list(self.hidden_dims),
                                 "latent_dim": self.latent_dim},
                "tensors": {k: v.detach().clone() for k, v in self.net_.state_dict().items()}}


class VAEDetector(AutoEncoderDetector):
    name = "vae"

    def _net(self, input_dim: int) -> torch.nn.Module:
        return VariationalAutoEncoder(input_dim, self.hidden_dims, self.latent_dim)
