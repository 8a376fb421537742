"""The paper's first module: simulated quantum encoders (sQE) as a projection stage."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from hqc.errors import UserError
from hqc.quantum.circuits import (
    amplitude_encode,
    amplitude_qubits,
    ansatz,
    check_amplitude_fit,
    z_observables,
)
from hqc.quantum.layer import Backend, QuantumLayer
from hqc.stages import Projection

FUSIONS = ("concat", "mean")


class SimulatedQuantumEncoders(Projection):
    """E parallel encoders: amplitude-encoded embedding → own PQC → Pauli-Z of Q_c qubits.

    Every encoder sees the whole embedding, L2-normalised and zero-padded to 2^Q amplitudes,
    runs the same circuit structure with its own weights, and yields Z expectations of qubits
    0..Q_c-1; the E latent vectors are fused.

    Args:
        encoders: E (the paper's multi-sQE uses 2).
        qubits: Q; by default the smallest with 2^Q >= the embedding width.
        truncate: with an explicit Q too small for the embedding, keep its first 2^Q features
            (the paper leaves this open) instead of raising.
        layers: M, layers of each encoder's PQC.
        connectivity: C, the largest CNOT offset of the ``long_range`` ansatz.
        ansatz: ``long_range`` (the paper's), ``nearest_neighbour`` or ``efficient_su2``.
        measured: Q_c, the number of measured qubits per encoder.
        fusion: ``concat`` (output E·Q_c, the natural reading of the paper) or ``mean``
            (output Q_c, encoders averaged).
        backend: ``torch``, ``qiskit`` or ``torchconnector`` (see
            :class:`~hqc.quantum.layer.QuantumLayer`).
        standardize: standardize each embedding feature with running batch statistics before
            amplitude encoding (not in the paper; see REPORT.md).

    Attributes (after ``build``):
        circuit: the PQC every encoder runs (its state preparation is the amplitude-encoded
            initial state, not a gate).
        encoder_layers: the E :class:`~hqc.quantum.layer.QuantumLayer` s, one weight set each.
        num_qubits: Q.
    """

    def __init__(
        self,
        encoders: int = 2,
        qubits: int | None = None,
        truncate: bool = False,
        layers: int = 2,
        connectivity: int = 2,
        ansatz: Literal["long_range", "nearest_neighbour", "efficient_su2"] = "long_range",
        measured: int = 4,
        fusion: Literal["concat", "mean"] = "concat",
        backend: Backend = "torch",
        standardize: bool = False,
    ) -> None:
        super().__init__()
        if encoders < 1:
            raise UserError(f"encoders must be >= 1, got {encoders}")
        if fusion not in FUSIONS:
            raise UserError(f"fusion must be one of {list(FUSIONS)}, got {fusion!r}")
        self.encoders = encoders
        self.qubits = qubits
        self.truncate = truncate
        self.layers = layers
        self.connectivity = connectivity
        self.ansatz = ansatz
        self.measured = measured
        self.fusion = fusion
        self.backend = backend
        self.standardize = standardize
        self.circuit = None

    def build(self, in_features: int, num_classes: int) -> int:
        """Create E encoders on Q qubits; return E·Q_c (concat) or Q_c (mean)."""
        self.num_qubits = self.qubits if self.qubits is not None else amplitude_qubits(in_features)
        check_amplitude_fit(in_features, self.num_qubits, self.truncate)
        self.circuit, weights = ansatz(self.ansatz, self.num_qubits, self.layers, self.connectivity)
        observables = z_observables(self.num_qubits, range(self.measured))
        # Running batch statistics, no learned affine: removes the direction every sentence
        # embedding shares, which otherwise dominates all amplitudes.
        self.norm = nn.BatchNorm1d(in_features, affine=False) if self.standardize else nn.Identity()
        self.encoder_layers = nn.ModuleList(
            QuantumLayer(
                self.circuit, observables, (), weights, self.backend, amplitude_encoded=True
            )
            for _ in range(self.encoders)
        )
        return len(observables) * (self.encoders if self.fusion == "concat" else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(B, d)`` → fused latent vector ``(B, out_features)``."""
        states = amplitude_encode(self.norm(x), self.num_qubits, self.truncate)
        no_inputs = x.new_empty(len(x), 0)
        latents = [encoder(no_inputs, states) for encoder in self.encoder_layers]
        return torch.cat(latents, -1) if self.fusion == "concat" else torch.stack(latents).mean(0)
