"""Autoencoder and variational autoencoder for novelty scores: plain modules and their LightningModules.

Both learn to reconstruct normal rows; a row they reconstruct badly is unlike the training
traffic. The score is the per-row mean squared reconstruction error (the VAE uses its mean
latent code, so scoring is deterministic).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def _stack(widths: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class AutoEncoder(nn.Module):
    def __init__(self, input_dim: int, hidden_dims: Sequence[int] = (64, 32), latent_dim: int = 8) -> None:
        super().__init__()
        self.encoder = nn.Sequential(_stack([input_dim, *hidden_dims]), nn.Linear(hidden_dims[-1], latent_dim))
        self.decoder = nn.Sequential(_stack([latent_dim, *reversed(hidden_dims)]), nn.Linear(hidden_dims[0], input_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class VariationalAutoEncoder(nn.Module):
    def __init__(self, input_dim: int, hidden_dims: Sequence[int] = (64, 32), latent_dim: int = 8) -> None:
        super().__init__()
        self.encoder = _stack([input_dim, *hidden_dims])
        self.mu = nn.Linear(hidden_dims[-1], latent_dim)
        self.logvar = nn.Linear(hidden_dims[-1], latent_dim)
        self.decoder = nn.Sequential(_stack([latent_dim, *reversed(hidden_dims)]), nn.Linear(hidden_dims[0], input_dim))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h).clamp(-10.0, 10.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decoder(z), mu, logvar


def reconstruction_error(net: nn.Module, x: torch.Tensor, batch_size: int = 65536) -> torch.Tensor:
    """Per-row mean squared error, in eval mode, without gradients."""
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size]
            recon = net(xb)
            recon = recon[0] if isinstance(recon, tuple) else recon
            out.append(((recon - xb) ** 2).mean(dim=1))
    return torch.cat(out)
