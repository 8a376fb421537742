"""Classical MLP core ``d → h → classes``: the paper's classical heads, parameter-matched."""

from __future__ import annotations

import torch
from torch import nn

from hqc.errors import UserError
from hqc.stages import Core


def mlp_parameters(in_features: int, hidden: int, num_classes: int) -> int:
    """Trainable parameters of ``d → h → classes`` (``h = 0``: one linear layer)."""
    if hidden == 0:
        return in_features * num_classes + num_classes
    return hidden * (in_features + 1) + num_classes * (hidden + 1)


def match_hidden(target: int, in_features: int, num_classes: int) -> int:
    """The width ``h ≥ 1`` whose parameter count is closest to ``target`` (ties: smaller)."""
    per_unit = in_features + 1 + num_classes
    guess = max(1, round((target - num_classes) / per_unit))
    candidates = {max(1, guess - 1), guess, guess + 1}
    return min(
        sorted(candidates), key=lambda h: abs(mlp_parameters(in_features, h, num_classes) - target)
    )


class MLP(Core):
    """An MLP head that outputs logits directly (pair it with an identity readout).

    Args:
        hidden: hidden width h; 0 means a single linear layer (logistic regression).
        parameters: instead of ``hidden``, a parameter budget: h is chosen so the head's
            parameter count is closest to it (for parameter-matched comparisons).
        dropout: dropout before the output layer.
    """

    def __init__(
        self, hidden: int | None = None, parameters: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if (hidden is None) == (parameters is None):
            raise UserError("core MLP: set exactly one of core.hidden or core.parameters")
        if hidden is not None and hidden < 0:
            raise UserError(f"core.hidden must be >= 0, got {hidden}")
        if parameters is not None and parameters < 1:
            raise UserError(f"core.parameters must be >= 1, got {parameters}")
        self.hidden = hidden
        self.parameters_target = parameters
        self.dropout = dropout

    def build(self, in_features: int, num_classes: int) -> int:
        """Create the layers; resolve a parameter budget into a hidden width."""
        if self.hidden is None:
            self.hidden = match_hidden(self.parameters_target, in_features, num_classes)
        if self.hidden == 0:
            self.net = nn.Linear(in_features, num_classes)
        else:
            self.net = nn.Sequential(
                nn.Linear(in_features, self.hidden),
                nn.ReLU(),
                nn.Dropout(self.dropout),
                nn.Linear(self.hidden, num_classes),
            )
        return num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, d)`` to logits ``(B, classes)``."""
        return self.net(x)
