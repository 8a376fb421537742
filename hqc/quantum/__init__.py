"""Quantum building blocks: circuits, the torch/Qiskit quantum layer and the quantum stages."""
