"""Quantum parts of hqc: Qiskit circuit builders, the torch executor and the quantum stages."""

from hqc.quantum.layer import QuantumLayer
from hqc.quantum.torch_qnn import TorchQNN

__all__ = ["QuantumLayer", "TorchQNN"]
