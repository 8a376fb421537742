"""Angle encoder stage: features → rotation angles fed to a circuit's input parameters."""

from __future__ import annotations

import math
from typing import Literal

import torch

from hqc.errors import UserError
from hqc.stages import AngleEncoder

_SQUASH = {"identity": lambda x: x, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


class ScaledAngles(AngleEncoder):
    """``angle = scale · squash(x)``: the paper's R_Y(x) encoding takes angles ∝ features.

    Args:
        scale: angle per unit feature; π maps [-1, 1] (e.g. Pauli-Z expectations from an sQE)
            onto a full turn of angles.
        squash: ``identity`` for bounded inputs; ``tanh``/``sigmoid`` bound unbounded features
            (e.g. a linear projection's) so angles do not wrap around.
    """

    def __init__(
        self, scale: float = math.pi, squash: Literal["identity", "tanh", "sigmoid"] = "identity"
    ) -> None:
        super().__init__()
        if squash not in _SQUASH:
            raise UserError(
                f"angle_encoder.squash must be one of {sorted(_SQUASH)}, got {squash!r}"
            )
        self.scale = scale
        self.squash = squash

    def build(self, in_features: int, num_classes: int) -> int:
        """One angle per feature."""
        return in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map features to angles elementwise."""
        return self.scale * _SQUASH[self.squash](x)
