"""The paper's "on QPU" module as a core stage: data re-uploading PQC with long-range CNOTs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from hqc.quantum.circuits import pauli_observables, reupload_circuit, z_observables
from hqc.quantum.layer import Backend, QuantumLayer
from hqc.stages import Core


class ReuploadPQC(Core):
    """``reuploads`` × [R(x_i) on qubit i → PQC 1], then PQC 2, then expectations.

    The number of qubits is the incoming width (set it with the projection / sQE upstream).
    Inputs are used as angles as they are (encoding scale 1): an angle-encoder stage upstream
    chooses their scale.

    Args:
        reuploads: N, the number of encoding + PQC 1 blocks.
        layers: M, layers of each PQC.
        connectivity: C, the largest CNOT offset of the ``long_range`` ansatz (C < qubits).
        ansatz: ``long_range`` (the paper's), ``nearest_neighbour`` or ``efficient_su2``.
        shared: one set of PQC 1 weights for all blocks (the figure's labels) instead of one
            per block (default: more expressive, and better in the MerLin reproduction).
        encoding: rotation of the angle encoding, ``ry`` (the paper's), ``rx`` or ``rz``.
        measured_qubits: Pauli-Z is measured on these qubits (the paper: Q_m = 1, qubit 0).
        observables: Pauli labels in Qiskit order (``"IIIZ"`` = Z on qubit 0 of 4); when
            given, they replace ``measured_qubits``.
        backend: ``torch``, ``qiskit`` or ``torchconnector`` (see
            :class:`~hqc.quantum.layer.QuantumLayer`).

    Attributes (after ``build``):
        circuit: the whole re-upload circuit, to draw or run elsewhere.
        layer: the :class:`~hqc.quantum.layer.QuantumLayer` holding its weights.
    """

    def __init__(
        self,
        reuploads: int = 2,
        layers: int = 2,
        connectivity: int = 2,
        ansatz: Literal["long_range", "nearest_neighbour", "efficient_su2"] = "long_range",
        shared: bool = False,
        encoding: Literal["ry", "rx", "rz"] = "ry",
        measured_qubits: Sequence[int] = (0,),
        observables: Sequence[str] | None = None,
        backend: Backend = "torch",
    ) -> None:
        super().__init__()
        self.reuploads = reuploads
        self.layers = layers
        self.connectivity = connectivity
        self.ansatz = ansatz
        self.shared = shared
        self.encoding = encoding
        self.measured_qubits = list(measured_qubits)
        self.observables = None if observables is None else list(observables)
        self.backend = backend
        self.circuit = None

    def build(self, in_features: int, num_classes: int) -> int:
        """Build the circuit on ``in_features`` qubits; one output per observable."""
        self.circuit, inputs, weights = reupload_circuit(
            in_features,
            reuploads=self.reuploads,
            layers=self.layers,
            connectivity=self.connectivity,
            ansatz=self.ansatz,
            shared=self.shared,
            encoding=self.encoding,
        )
        if self.observables is None:
            observables = z_observables(in_features, self.measured_qubits)
        else:
            observables = pauli_observables(in_features, self.observables)
        self.layer = QuantumLayer(self.circuit, observables, inputs, weights, self.backend)
        return len(observables)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Angles ``(B, Q)`` → expectations ``(B, n_obs)``."""
        return self.layer(x)
