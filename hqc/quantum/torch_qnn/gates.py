"""Flattening: a Qiskit circuit as a list of 1- and 2-qubit gates with affine angle slots.

A rotation is written as ``A0 + cos(φ) Ac + sin(φ) As`` with constant matrices and ``φ`` affine in
the inputs and weights, so every angle of a forward pass comes from one matmul
``[inputs, weights] @ A + b``; non-affine angles fall back to a sympy-generated torch function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Gate, Parameter, ParameterExpression
from qiskit.circuit.exceptions import CircuitError
from qiskit.circuit.library import RYGate, RZGate

_ROTATIONS = frozenset({"rx", "ry", "rz", "p", "crx", "cry", "crz", "cp", "rxx", "ryy", "rzz"})
_IGNORED = frozenset({"barrier", "delay"})

AngleFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class FlatGate:
    """A flattened gate: a fixed matrix ``(F,)``, or a rotation ``(A0, Ac, As)`` at ``slot``."""

    qubits: tuple[int, ...]
    mats: tuple[np.ndarray, ...]
    label: str
    slot: int | None = None
    per_sample: bool = False


@dataclass
class Angles:
    """Angle slots ``φ = rows @ [inputs, weights] + consts`` (+ non-affine values)."""

    variables: dict[Parameter, int]
    n_inputs: int
    rows: list[np.ndarray] = field(default_factory=list)
    consts: list[float] = field(default_factory=list)
    nonaffine: list[tuple[int, AngleFn]] = field(default_factory=list)

    def depends_on_inputs(self, expr: ParameterExpression | float) -> bool:
        """Whether ``expr`` involves an input parameter (so its gate is per-sample)."""
        params = expr.parameters if isinstance(expr, ParameterExpression) else ()
        return any(self.variables.get(p, self.n_inputs) < self.n_inputs for p in params)

    def add(self, expr: ParameterExpression | float, factor: float, label: str) -> int:
        """Register ``factor * expr`` as a new slot and return its index."""
        row = np.zeros(len(self.variables))
        slot = len(self.rows)
        params = expr.parameters if isinstance(expr, ParameterExpression) else set()
        unknown = sorted(p.name for p in params if p not in self.variables)
        if unknown:
            raise ValueError(
                f"parameter(s) {unknown} of {label} are in neither input_params nor weight_params"
            )
        const = 0.0
        try:
            for p in params:
                row[self.variables[p]] = factor * float(expr.gradient(p))
            const = factor * float(expr.bind(dict.fromkeys(params, 0.0)) if params else expr)
        except TypeError:  # a gradient still depends on parameters: not affine
            row[:] = 0.0
            self.nonaffine.append((slot, _lambdify(expr, self.variables, factor)))
        self.rows.append(row)
        self.consts.append(const)
        return slot


def _lambdify(expr: ParameterExpression, variables: dict[Parameter, int], factor: float) -> AngleFn:
    """Torch function of the ``[inputs, weights]`` matrix evaluating a non-affine angle."""
    params = sorted(expr.parameters, key=lambda p: p.name)
    fn = sympy.lambdify([sympy.Symbol(p.name) for p in params], expr.sympify(), modules="torch")
    columns = [variables[p] for p in params]
    return lambda v: factor * fn(*(v[:, c] for c in columns))


def flatten(circuit: QuantumCircuit, angles: Angles) -> list[FlatGate]:
    """Expand ``circuit`` into supported 1- and 2-qubit gates, registering their angle slots.

    Input-dependent gates always come out as 1-qubit rotations.
    """
    gates: list[FlatGate] = []

    def visit(circ: QuantumCircuit, qubit_map: Sequence[int], top: int | None, where: str) -> None:
        for index, inst in enumerate(circ.data):
            op, at = inst.operation, index if top is None else top
            qubits = tuple(qubit_map[circ.find_bit(q).index] for q in inst.qubits)
            label = f"{op.name!r} at instruction {at}{where}"
            symbolic = any(isinstance(p, ParameterExpression) and p.parameters for p in op.params)
            if op.name in _IGNORED:
                continue
            if (
                symbolic
                and op.name in _ROTATIONS
                and (len(qubits) == 1 or not angles.depends_on_inputs(op.params[0]))
            ):
                gates.append(_rotation(op, qubits, label, angles))
            elif symbolic and op.name == "u":  # U(θ, φ, λ) = RZ(φ) RY(θ) RZ(λ) up to phase
                theta, phi, lam = op.params
                for rot in (RZGate(lam), RYGate(theta), RZGate(phi)):
                    gates.append(_rotation(rot, qubits, label, angles))
            elif (
                not symbolic
                and isinstance(op, Gate)
                and op.num_qubits <= 2
                and ((matrix := _matrix(op)) is not None)
            ):
                gates.append(FlatGate(qubits, (matrix,), label))
            elif op.definition is not None:
                visit(op.definition, qubits, at, f"{where} inside {op.name!r}")
            else:
                raise ValueError(
                    f"cannot simulate {label}: it is not a unitary gate with a "
                    "known matrix or a definition (measure/reset are unsupported)"
                )

    visit(circuit, range(circuit.num_qubits), None, "")
    return gates


def _matrix(op: Gate) -> np.ndarray | None:
    """The gate's matrix with round-off cleaned (so real gates are detected as real), if any."""
    try:
        m = np.asarray(op.to_matrix(), dtype=complex)
    except (CircuitError, TypeError, AttributeError):
        return None
    return np.where(np.abs(m.real) < 1e-14, 0, m.real) + 1j * np.where(
        np.abs(m.imag) < 1e-14, 0, m.imag
    )


def _rotation(op: Gate, qubits: tuple[int, ...], label: str, angles: Angles) -> FlatGate:
    """Write ``op(θ)`` as ``A0 + cos(φ) Ac + sin(φ) As`` with ``φ = θ/2`` (or ``θ`` for phases)."""

    def at(theta: float) -> np.ndarray:
        g = op.copy()
        g.params = [theta]
        return _matrix(g)

    for scale in (0.5, 1.0):
        m0, m_pi, m_half = at(0.0), at(np.pi / scale), at(np.pi / 2 / scale)
        a0, ac = (m0 + m_pi) / 2, (m0 - m_pi) / 2
        mats = (a0, ac, m_half - a0)
        if all(
            np.allclose(at(phi / scale), a0 + np.cos(phi) * ac + np.sin(phi) * mats[2], atol=1e-12)
            for phi in (0.7, -2.1)
        ):
            slot = angles.add(op.params[0], scale, label)
            return FlatGate(qubits, mats, label, slot, angles.depends_on_inputs(op.params[0]))
    raise AssertionError(f"{label} is not a rotation")  # unreachable for _ROTATIONS
