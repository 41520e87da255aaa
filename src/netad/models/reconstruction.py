"""LightningModule that trains an autoencoder or a VAE on normal rows (see ``netad.models.autoencoder``)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from netad.models.autoencoder import VariationalAutoEncoder


class ReconstructionModule(L.LightningModule):
    """Trains an AutoEncoder (MSE) or a VariationalAutoEncoder (MSE + beta * KL) on normal rows."""

    def __init__(self, net: nn.Module, learning_rate: float = 1e-3, beta: float = 1.0) -> None:
        super().__init__()
        self.net, self.learning_rate, self.beta = net, learning_rate, beta

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x = batch[0]
        if isinstance(self.net, VariationalAutoEncoder):
            recon, mu, logvar = self.net(x)
            kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1))
            return F.mse_loss(recon, x, reduction="none").sum(dim=1).mean() + self.beta * kl
        return F.mse_loss(self.net(x), x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)
