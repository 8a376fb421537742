"""Linear projection stage: the classical way to shrink an embedding to the circuit's width."""

from __future__ import annotations

import torch
from torch import nn

from hqc.errors import UserError
from hqc.stages import Projection


class LinearProjection(Projection):
    """``d → out_features`` linear map (e.g. out_features = number of qubits).

    Args:
        out_features: output width; for a quantum core this is its number of qubits.
        bias: learn an offset.
    """

    def __init__(self, out_features: int, bias: bool = True) -> None:
        super().__init__()
        if out_features < 1:
            raise UserError(f"projection.out_features must be >= 1, got {out_features}")
        self.out_features = out_features
        self.bias = bias

    def build(self, in_features: int, num_classes: int) -> int:
        """Create the ``in_features → out_features`` weight."""
        self.linear = nn.Linear(in_features, self.out_features, bias=self.bias)
        return self.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``(B, d)`` to ``(B, out_features)``."""
        return self.linear(x)
