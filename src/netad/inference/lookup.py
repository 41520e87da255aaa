"""The trained MLP's first layer as a lookup: one-hot blocks become summed rows of its weights, so scoring
multiplies nothing by zeros. Scoring only; training uses the plain MLP."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from netad.models.mlp import MLP


class SplitInputMLP:
    """Inference-only view of a trained :class:`MLP` whose input is dense features followed by
    one-hot blocks (the layout of ``TabularPreprocessor``). The one-hot part of the first layer
    becomes one summed row lookup (``embedding_bag``), so nothing is multiplied by zeros; weights
    are kept transposed and contiguous, and rows go through in cache-sized slices. Gives ``mlp``'s
    logits up to float rounding."""

    SLICE = 2048

    def __init__(self, mlp: MLP, dense_width: int, block_sizes: Sequence[int]) -> None:
        linears = [m for m in mlp.net if isinstance(m, nn.Linear)]
        self.activations = [m for m in mlp.net if not isinstance(m, (nn.Linear, nn.Dropout))]
        first = linears[0].weight.detach()
        if first.shape[1] != dense_width + sum(block_sizes):
            raise ValueError(f"the first layer reads {first.shape[1]} features, the layout has "
                             f"{dense_width} + {sum(block_sizes)}")
        # copies, never views of the model's own weights (a width-1 layer's transpose is contiguous)
        self.dense_weight = first[:, :dense_width].T.clone(memory_format=torch.contiguous_format)
        self.table = first[:, dense_width:].T.clone(memory_format=torch.contiguous_format)  # a row per one-hot position
        self.block_starts = torch.tensor([0, *block_sizes[:-1]], dtype=torch.int64).cumsum(0) if block_sizes \
            else torch.zeros(0, dtype=torch.int64)
        self.first_bias = linears[0].bias.detach().clone()
        if block_sizes:  # each row sums exactly one row of the first one-hot block: it carries the bias
            self.table[: block_sizes[0]] += self.first_bias
        self.layers = [(lin.weight.detach().T.clone(memory_format=torch.contiguous_format), lin.bias.detach().clone())
                       for lin in linears[1:]]

    def __call__(self, dense: torch.Tensor, codes: Sequence[torch.Tensor]) -> torch.Tensor:
        positions = torch.stack(list(codes), dim=1) + self.block_starts if len(codes) else None
        with torch.inference_mode():
            out = [self._slice(dense[i: i + self.SLICE], None if positions is None else positions[i: i + self.SLICE])
                   for i in range(0, dense.shape[0], self.SLICE)]
            return torch.cat(out) if out else torch.zeros(0)

    def _slice(self, dense: torch.Tensor, positions: Optional[torch.Tensor]) -> torch.Tensor:
        if positions is None:
            h = torch.addmm(self.first_bias, dense, self.dense_weight)
        else:  # the looked-up rows (bias included), then the dense part added in place
            h = F.embedding_bag(positions, self.table, mode="sum").addmm_(dense, self.dense_weight)
        for activation, (weight, bias) in zip(self.activations, self.layers):
            h = torch.addmm(bias, h.relu_() if isinstance(activation, nn.ReLU) else activation(h), weight)
        return h.squeeze(-1)
