"""A :class:`~hqc.noise.spec.NoiseSpec` as qiskit-aer channels, noise model and simulator.

Conventions that silently go wrong otherwise:

* ``depolarizing_error(λ, n)`` takes λ, not the error rate r: without relaxation λ = 2r for one
  qubit and 4r/3 for two (r = λ(d-1)/d, d = 2^n). With T1/T2 the depolarising part is reduced
  so that depolarising-then-relaxation still has error rate r, exactly as
  ``NoiseModel.from_backend`` builds a device's model.
* Errors attach by gate *name*: a circuit must be transpiled to the spec's basis gates
  (:func:`transpile_to_basis`) or no error is applied at all.

* qiskit-aer 0.18 ignores the angle of a *parametrised* controlled rotation
  (:data:`AER_UNBOUND_BROKEN`: ``cp, crx, cry, crz, cu1, cu3``) in its primitives: one parameter
  set silently runs angle 0, several fail with "Result for experiment 1 could not be found". A
  bound angle is fine, and so are ``cu``, ``rzz`` and the other rotations.
  :func:`without_aer_broken_gates` rewrites those gates into their definitions; a noise spec
  refuses them as basis gates (errors attach by name, so they cannot be rewritten there).

:func:`gate_errors` is the one source of the channels: the Aer noise model and hqc's torch
density-matrix path (:mod:`hqc.quantum.density`) both build on it, so they model the same noise.
"""

from __future__ import annotations

from typing import Any

from qiskit import QuantumCircuit, transpile
from qiskit.circuit import ParameterExpression
from qiskit.circuit.library import get_standard_gate_name_mapping
from qiskit.quantum_info import average_gate_fidelity
from qiskit.transpiler.preset_passmanagers import generate_preset_pass_manager
from qiskit_aer import AerSimulator
from qiskit_aer.noise import (
    NoiseModel,
    QuantumError,
    ReadoutError,
    depolarizing_error,
    thermal_relaxation_error,
)

from hqc.errors import UserError
from hqc.noise.spec import AER_UNBOUND_BROKEN, NoiseSpec, fake_backend, resolve


def without_aer_broken_gates(circuit: QuantumCircuit) -> QuantumCircuit:
    """``circuit`` with every controlled rotation of a free angle that Aer mis-binds
    (:data:`AER_UNBOUND_BROKEN`) replaced by its definition (rz/ry/p/u and cx); unchanged,
    the same object, when there is none."""
    while names := {
        inst.operation.name
        for inst in circuit.data
        if inst.operation.name in AER_UNBOUND_BROKEN
        and any(isinstance(p, ParameterExpression) and p.parameters for p in inst.operation.params)
    }:
        circuit = circuit.decompose(gates_to_decompose=sorted(names))
    return circuit


def gate_errors(spec: NoiseSpec) -> dict[str, QuantumError]:
    """The error channel after each noisy basis gate, keyed by gate name.

    Virtual gates and gates with neither a rate nor relaxation are absent (they are exact).

    Raises:
        UserError: a basis gate that is not a standard 1- or 2-qubit Qiskit gate.
    """
    standard = get_standard_gate_name_mapping()
    errors = {}
    for name in spec.basis_gates:
        if name in spec.virtual_gates:
            continue
        gate = standard.get(name)
        if gate is None or gate.num_qubits not in (1, 2):
            raise UserError(
                f"noise.basis_gates: {name!r} is not a standard 1- or 2-qubit gate "
                "(e.g. rx, ry, rz, sx, x, cx, cz, ecr)"
            )
        one = gate.num_qubits == 1
        rate = spec.gate_error_1q if one else spec.gate_error_2q
        time = spec.gate_time_1q if one else spec.gate_time_2q
        relax = None
        if spec.relaxation and time > 0:
            relax = thermal_relaxation_error(spec.t1, spec.t2, time)
            relax = relax if one else relax.tensor(relax)
        error = _depolarizing(rate, gate.num_qubits, relax)
        if error is not None and relax is not None:
            error = error.compose(relax)
        error = error or relax
        if error is not None:
            errors[name] = error
    return errors


def _depolarizing(rate: float, qubits: int, relax: QuantumError | None) -> QuantumError | None:
    """The depolarising channel that, followed by ``relax``, has average error rate ``rate``."""
    relax_fidelity = 1.0 if relax is None else average_gate_fidelity(relax)
    if rate <= 1.0 - relax_fidelity:
        return None  # relaxation alone explains the published rate
    dim = 2**qubits
    param = dim * (rate - (1.0 - relax_fidelity)) / (dim * relax_fidelity - 1)
    return depolarizing_error(min(param, 4**qubits / (4**qubits - 1)), qubits)


def readout(spec: NoiseSpec) -> ReadoutError | None:
    """The symmetric bit-flip error on every measured bit, or None without readout error."""
    p = spec.readout_error
    return ReadoutError([[1 - p, p], [p, 1 - p]]) if p > 0 else None


def noise_model(noise: NoiseSpec | str) -> NoiseModel:
    """Aer's noise model for a spec, preset name or ``fake:<FakeBackend>`` calibration."""
    noise = resolve(noise)
    if isinstance(noise, str):
        return NoiseModel.from_backend(fake_backend(noise))
    model = NoiseModel(basis_gates=list(noise.basis_gates))
    for name, error in gate_errors(noise).items():
        model.add_all_qubit_quantum_error(error, name)
    bit_flip = readout(noise)
    if bit_flip is not None:
        model.add_all_qubit_readout_error(bit_flip)
    return model


def simulator(noise: NoiseSpec | str, method: str, seed: int = 0) -> AerSimulator:
    """An ``AerSimulator`` with ``noise`` and an explicit ``method`` (with shots and ≥ 10
    qubits Aer otherwise picks trajectories on its own)."""
    noise = resolve(noise)
    if isinstance(noise, str):
        return AerSimulator.from_backend(fake_backend(noise), method=method, seed_simulator=seed)
    return AerSimulator(method=method, noise_model=noise_model(noise), seed_simulator=seed)


def transpile_to_basis(circuit: QuantumCircuit, noise: NoiseSpec | str, seed: int = 0) -> Any:
    """``circuit`` in the gates the noise attaches to.

    A spec: its basis gates at ``optimization_level=0`` (the gates stay where they were, so
    the noisy circuit is the trained one). A fake backend: its coupling map and calibrated
    layout too (level 1), since its errors are per physical qubit and pair; observables then
    need ``op.apply_layout(result.layout)``.
    """
    noise = resolve(noise)
    if isinstance(noise, str):
        manager = generate_preset_pass_manager(1, backend=fake_backend(noise), seed_transpiler=seed)
        return manager.run(circuit)
    return transpile(
        circuit, basis_gates=list(noise.basis_gates), optimization_level=0, seed_transpiler=seed
    )
