"""A plain feedforward classifier, usable without Lightning."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}


class MLP(nn.Module):
    """Linear -> activation -> dropout for each hidden layer, then one logit (anomaly)."""

    def __init__(self, input_dim: int, hidden_dims: Sequence[int] = (128, 64, 32), dropout: float = 0.3,
                 activation: str = "relu") -> None:
        super().__init__()
        if input_dim < 1:
            raise ValueError(f"input_dim must be >= 1, got {input_dim}")
        layers: list[nn.Module] = []
        width = input_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation](), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch,)."""
        return self.net(x).squeeze(-1)


def mlp_args(arch: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """(input_dim, hidden_dims, dropout, activation), with MLP's defaults where the file leaves one out."""
    return (arch.get("input_dim"), arch.get("hidden_dims", [128, 64, 32]), arch.get("dropout", 0.3),
            arch.get("activation", "relu"))


def network_problem(arch: Any, weights: dict[str, Any], prefix: str) -> Optional[str]:
    """What keeps ``weights`` (keys ``prefix`` + MLP parameter names) from being the MLP that ``arch``
    (input_dim, hidden_dims, dropout, activation) describes (one line), or None."""
    if not isinstance(arch, dict):
        return "the architecture is missing"
    input_dim, hidden, dropout, activation = mlp_args(arch)
    if not isinstance(input_dim, int) or isinstance(input_dim, bool) or input_dim < 1:
        return f"input_dim {input_dim!r} is not a positive whole number"
    if not isinstance(hidden, (list, tuple)) or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1
                                                         for h in hidden):
        return f"hidden_dims {hidden!r} is not a list of positive whole numbers"
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        return f"dropout {dropout!r} is not a number in [0, 1)"
    if activation not in ACTIVATIONS:
        return f"activation {activation!r} is not one of {', '.join(ACTIVATIONS)}"
    with torch.device("meta"):  # shapes only: nothing is allocated
        expected = MLP(input_dim, list(hidden), float(dropout), activation).state_dict()
    got = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    missing = [k for k in expected if k not in got]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        return f"weight {prefix}{missing[0]} is missing{more}"
    extra = [k for k in got if k not in expected]
    if extra:
        return f"weight {prefix}{extra[0]} is not part of a {input_dim}-{'-'.join(map(str, hidden))}-1 network"
    for key, want in expected.items():
        have = got[key]
        if not isinstance(have, torch.Tensor) or not have.is_floating_point():
            return f"weight {prefix}{key} is not a floating-point tensor"
        if tuple(have.shape) != tuple(want.shape):
            return f"weight {prefix}{key} has shape {list(have.shape)}, the architecture needs {list(want.shape)}"
    return None
