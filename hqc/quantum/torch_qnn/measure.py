"""Observables of :class:`~hqc.quantum.torch_qnn.TorchQNN`: Pauli sums as tables over the basis.

A Pauli string maps ``|x>`` to ``phase(x) |x ^ mask>``, so an observable is a real diagonal plus
one bit-flip term per ``mask``; ``<ψ|O|ψ>`` is then a few gathers and GEMMs on the final state,
in the qubit order the evolution ends in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from qiskit.quantum_info import SparsePauliOp
from torch import nn


def register_observables(
    module: nn.Module,
    observables: SparsePauliOp | Sequence[SparsePauliOp],
    n: int,
    frame: int,
) -> int:
    """Register the diagonal and bit-flip tables of ``observables`` on ``module``; return a count.

    ``frame`` is the final cyclic rotation of the qubit order. Tables are float64 (so ``.double()``
    is exact) and cast to the state's dtype when used.
    """
    obs = [observables] if isinstance(observables, SparsePauliOp) else list(observables)
    for j, o in enumerate(obs):
        if o.num_qubits != n:
            raise ValueError(f"observable {j} acts on {o.num_qubits} qubits, the circuit has {n}")
    diag = np.zeros((2**n, len(obs)))
    flips: dict[int, np.ndarray] = {}
    for j, o in enumerate(obs):
        for pauli, coeff in zip(o.paulis, o.coeffs, strict=True):
            phase, mask = np.ones(1, dtype=complex), 0
            for p in range(n):  # physical bit p holds logical qubit (p + frame) % n
                q = (p + frame) % n
                x, z = bool(pauli.x[q]), bool(pauli.z[q])
                factor = (np.array([1, -1]) if z else np.ones(2)) * (1j if x and z else 1)
                phase, mask = np.kron(factor, phase), mask | int(x) << p
            term = coeff * (-1j) ** pauli.phase * phase
            if mask:
                flips.setdefault(mask, np.zeros((2**n, len(obs)), dtype=complex))[:, j] += term
            else:
                diag[:, j] += term.real
    masks = sorted(flips)
    flip = np.array([flips[m] for m in masks]).reshape(len(masks), 2**n, len(obs))
    index = np.array([np.arange(2**n) ^ m for m in masks]).reshape(len(masks), 2**n)
    module.register_buffer("_diag", torch.tensor(diag, dtype=torch.float64))
    module.register_buffer("_flip_index", torch.tensor(index, dtype=torch.long))
    module.register_buffer("_flip_re", torch.tensor(flip.real, dtype=torch.float64))
    module.register_buffer("_flip_im", torch.tensor(flip.imag, dtype=torch.float64))
    return len(obs)


def expectations(module: nn.Module, state: torch.Tensor, rdtype: torch.dtype) -> torch.Tensor:
    """Real part of ``<ψ|O_j|ψ>`` for every observable registered on ``module``, ``(B, J)``."""
    probs = state.real.square() + state.imag.square() if state.is_complex() else state.square()
    out = probs @ module._diag.to(rdtype)
    for index, d_re, d_im in zip(module._flip_index, module._flip_re, module._flip_im, strict=True):
        prod = state.index_select(1, index).conj() * state
        if prod.is_complex():
            out = out + prod.real @ d_re.to(rdtype) - prod.imag @ d_im.to(rdtype)
        else:
            out = out + prod @ d_re.to(rdtype)
    return out
