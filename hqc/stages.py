"""Base classes for the pipeline stages: encoder → projection → angle encoder → core → readout.

Every stage is a plain ``nn.Module`` that YAML can swap by ``class_path``. A stage states only
its own choices in ``__init__``; the classifier calls :meth:`Stage.build` in pipeline order with
the width the previous stage produces, so widths never have to be repeated across a config.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import torch
from torch import nn


class Encoder(nn.Module, ABC):
    """Turns raw sentences into embeddings of width ``out_features``."""

    out_features: int
    trainable: bool = False

    def warm(self, texts: Sequence[str], device: torch.device | str = "cpu") -> None:
        """Prepare for ``texts`` before training (e.g. fill an embedding cache); optional."""

    def held_out_parameters(self) -> Iterator[nn.Parameter]:
        """Frozen weights kept outside the module tree (``_frozen``, not checkpointed).

        The parameter table counts them as frozen; ``parameters()`` cannot see them.
        """
        frozen = getattr(self, "_frozen", None)
        return frozen.parameters() if frozen is not None else iter(())

    @abstractmethod
    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed a batch of sentences: ``(B, out_features)``."""


class Stage(nn.Module, ABC):
    """A tensor stage built lazily once its input width is known."""

    @abstractmethod
    def build(self, in_features: int, num_classes: int) -> int:
        """Create this stage's parameters for ``in_features`` inputs; return its output width."""

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch ``(B, in_features)`` to ``(B, out_features)``."""


class Projection(Stage):
    """Shrinks an embedding to the width the core works on (e.g. the number of qubits)."""


class AngleEncoder(Stage):
    """Turns features into rotation angles for a circuit's input parameters."""


class Core(Stage):
    """The trainable heart of the head: a quantum circuit or a classical MLP."""


class Readout(Stage):
    """Maps the core's outputs (e.g. expectation values) to class logits."""


class Identity(Projection, AngleEncoder, Core, Readout):
    """A stage that does nothing, for pipelines that skip one (e.g. no angle encoder)."""

    def build(self, in_features: int, num_classes: int) -> int:
        """Pass the width through unchanged."""
        return in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` unchanged."""
        return x
