"""Readout stage: the paper's single linear layer from measured values to class logits."""

from __future__ import annotations

import torch
from torch import nn

from hqc.stages import Readout


class LinearReadout(Readout):
    """``Q_m → classes`` linear map from expectation values to logits."""

    def build(self, in_features: int, num_classes: int) -> int:
        """Create the ``in_features → num_classes`` layer."""
        self.linear = nn.Linear(in_features, num_classes)
        return num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, Q_m)`` to logits ``(B, classes)``."""
        return self.linear(x)
