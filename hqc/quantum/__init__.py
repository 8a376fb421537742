"""Quantum parts of hqc: Qiskit circuit builders, the torch executor and the quantum stages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hqc.quantum.layer import QuantumLayer
from hqc.quantum.torch_qnn import TorchQNN

if TYPE_CHECKING:
    from hqc.quantum.torch_network import TorchQNNNetwork

__all__ = ["QuantumLayer", "TorchQNN", "TorchQNNNetwork"]


def __getattr__(name: str) -> object:
    """``TorchQNNNetwork`` on first use: it imports qiskit-machine-learning."""
    if name == "TorchQNNNetwork":
        from hqc.quantum.torch_network import TorchQNNNetwork

        return TorchQNNNetwork
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
