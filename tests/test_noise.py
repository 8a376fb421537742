"""Noise spec validation and presets, and that its Aer channels are the physics they claim."""

from __future__ import annotations

import math

import numpy as np
import pytest
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp, Statevector, average_gate_fidelity
from qiskit_aer.primitives import EstimatorV2, SamplerV2

from hqc.errors import UserError
from hqc.noise.aer import (
    gate_errors,
    noise_model,
    simulator,
    transpile_to_basis,
    without_aer_broken_gates,
)
from hqc.noise.spec import NoiseSpec, load_preset, presets, resolve
from hqc.quantum.circuits import reupload_circuit
from hqc.quantum.execution import Execution


def _noisy_z(circuit: QuantumCircuit, spec: NoiseSpec, qubit: int = 0) -> float:
    """Exact noisy ⟨Z_qubit⟩ on Aer's density matrix (no readout: the estimator ignores it)."""
    op = SparsePauliOp.from_sparse_list([("Z", [qubit], 1.0)], circuit.num_qubits)
    estimator = EstimatorV2.from_backend(
        simulator(spec, "density_matrix"), options={"default_precision": 0.0}
    )
    return float(estimator.run([(circuit, op)]).result()[0].data.evs)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"gate_error_1q": 1.5}, "gate_error_1q"),
        ({"gate_error_2q": -0.1}, "gate_error_2q"),
        ({"readout_error": 1.2}, "readout_error"),
        ({"t1": 1.0, "t2": 3.0}, "t2"),
        ({"t1": 1.0}, "t1 and noise.t2"),
        ({"t1": -1.0, "t2": 1.0}, "t1"),
        ({"gate_time_2q": -1e-6}, "gate_time_2q"),
        ({"gate_error_1q": "high"}, "gate_error_1q"),
        ({"virtual_gates": ("rz",), "basis_gates": ("sx", "cz")}, "virtual_gates"),
    ],
)
def test_bad_noise_settings_name_the_setting(settings, named):
    with pytest.raises(UserError, match=f"noise.{named}"):
        NoiseSpec(**settings)


def test_bad_execution_and_preset_names_raise_user_errors():
    for shots in (0, -5, 1.5, True):
        with pytest.raises(UserError, match=r"execution\.shots"):
            Execution(shots=shots)
    with pytest.raises(UserError, match="no such preset"):
        Execution(noise="no_such_device")
    with pytest.raises(UserError, match="unknown noise setting"):
        resolve({"gate_eror_1q": 0.1})
    with pytest.raises(UserError, match="not a standard"):
        gate_errors(NoiseSpec(basis_gates=("rx", "frobnicate"), virtual_gates=()))


def test_unknown_fake_backend_raises_and_a_known_one_builds_a_model():
    import qiskit_ibm_runtime  # noqa: F401  (in the test extra: this runs in CI, never skips)

    with pytest.raises(UserError, match="FakeNowhere"):
        resolve("fake:FakeNowhere")
    with pytest.raises(UserError, match="fake backend"):
        Execution(noise="fake:FakeManilaV2")  # per-qubit calibrations are Aer-only
    model = noise_model("fake:FakeManilaV2")
    assert "cx" in model.noise_instructions and "measure" in model.noise_instructions


def test_presets_load_by_name_with_their_published_rates():
    assert {"ionq_aria", "ibm_heron"} <= set(presets())
    aria, heron = load_preset("ionq_aria"), resolve("ibm_heron")
    assert aria.gate_error_2q == pytest.approx(1 - 0.996)  # 2q fidelity 99.6 %
    assert heron.basis_gates == ("rz", "sx", "x", "cz") and heron.t2 <= 2 * heron.t1
    for spec in (aria, heron):  # published rate = total error of depolarising + relaxation
        errors = gate_errors(spec)
        assert "rz" not in errors  # virtual
        two = next(e for e in errors.values() if e.num_qubits == 2)
        assert 1 - average_gate_fidelity(two) == pytest.approx(spec.gate_error_2q, rel=1e-6)


def test_depolarising_lambda_is_converted_from_the_error_rate():
    """⟨Z⟩ of RY(θ)|0⟩ is (1 - λ) cos θ after a depolarising λ, with λ = 2r (1q), 4r/3 (2q)."""
    theta = 0.7
    one = QuantumCircuit(1)
    one.ry(theta, 0)
    assert _noisy_z(one, NoiseSpec(gate_error_1q=0.1)) == pytest.approx(0.8 * math.cos(theta))
    two = QuantumCircuit(2)
    two.ry(theta, 0)
    two.cx(0, 1)
    noisy = _noisy_z(two, NoiseSpec(gate_error_2q=0.15), qubit=1)
    assert noisy == pytest.approx(0.8 * math.cos(theta))


def test_thermal_relaxation_decays_an_excited_qubit():
    flip = QuantumCircuit(1)
    flip.rx(math.pi, 0)
    spec = NoiseSpec(t1=1.0, t2=2.0, gate_time_1q=0.5)  # pure amplitude damping for 0.5 T1
    assert _noisy_z(flip, spec) == pytest.approx(1 - 2 * math.exp(-0.5), abs=1e-9)


def test_noise_attaches_only_to_transpiled_circuits():
    """An H gate is not in the basis: Aer runs it noiselessly unless transpiled to rx/ry/rz."""
    circuit = QuantumCircuit(1)
    circuit.h(0)
    circuit.ry(0.3, 0)
    spec = NoiseSpec(gate_error_1q=0.2)
    exact = float(Statevector(circuit).expectation_value(SparsePauliOp("Z")).real)
    assert "h" not in spec.basis_gates
    untranspiled = _noisy_z(circuit, NoiseSpec(gate_error_1q=0.0, basis_gates=("h", "ry", "rz")))
    assert untranspiled == pytest.approx(exact)
    transpiled = transpile_to_basis(circuit, spec)
    assert set(transpiled.count_ops()) <= set(spec.basis_gates)
    assert abs(_noisy_z(transpiled, spec)) < abs(exact) - 0.1


def test_readout_error_flips_sampled_bits():
    circuit = QuantumCircuit(1)
    circuit.measure_all()
    p, shots = 0.1, 40_000
    sampler = SamplerV2.from_backend(
        simulator(NoiseSpec(readout_error=p), "density_matrix"), seed=3
    )
    ones = sampler.run([circuit], shots=shots).result()[0].data.meas.get_counts().get("1", 0)
    assert ones / shots == pytest.approx(p, abs=5 * math.sqrt(p * (1 - p) / shots))


def test_noise_free_aer_equals_the_exact_statevector():
    circuit, _, _ = reupload_circuit(4, reuploads=2, layers=1, connectivity=2)
    rng = np.random.default_rng(0)
    bound = circuit.assign_parameters(rng.uniform(-np.pi, np.pi, circuit.num_parameters))
    ops = [SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], 4) for q in range(4)]
    exact = [Statevector(bound).expectation_value(op).real for op in ops]
    for spec in (NoiseSpec(), NoiseSpec(basis_gates=("rz", "sx", "x", "cz"))):
        isa = transpile_to_basis(bound, spec)
        estimator = EstimatorV2.from_backend(
            simulator(spec, "density_matrix"), options={"default_precision": 0.0}
        )
        noisy = estimator.run([(isa, [ops])]).result()[0].data.evs
        np.testing.assert_allclose(np.ravel(noisy), exact, atol=1e-10)


@pytest.mark.parametrize("gate", ["cp", "crx", "cry", "crz", "cu1", "cu3"])
def test_controlled_rotations_with_free_angles_are_rewritten_for_aer(gate):
    """Aer 0.18 runs a parametrised crz & co. at angle 0 (one set) or fails (several sets);
    after :func:`without_aer_broken_gates` its estimator gives the exact values."""
    from qiskit.circuit import Parameter
    from qiskit.circuit.library import get_standard_gate_name_mapping

    gate_class = get_standard_gate_name_mapping()[gate].base_class
    angles = [Parameter(f"t{i}") for i in range(3 if gate == "cu3" else 1)]
    circuit = QuantumCircuit(2)
    circuit.ry(0.9, 0)
    circuit.h(1)
    circuit.append(gate_class(*angles), [0, 1])
    circuit.ry(0.4, 1)
    ops = [SparsePauliOp(label) for label in ("IX", "IY", "IZ", "ZX", "XY")]
    values = np.random.default_rng(0).uniform(-np.pi, np.pi, (3, len(angles)))
    exact = [
        [Statevector(circuit.assign_parameters(row)).expectation_value(op).real for op in ops]
        for row in values
    ]
    safe = without_aer_broken_gates(circuit)
    assert gate not in safe.count_ops()
    estimator = EstimatorV2(options={"default_precision": 0.0})
    for rows in (values, values[:1]):  # several sets (Aer fails) and one set (Aer ignores angles)
        evs = estimator.run([(safe, [ops], rows[:, None, :])]).result()[0].data.evs
        np.testing.assert_allclose(evs, exact[: len(rows)], atol=1e-12)
    bound = circuit.assign_parameters(values[0])
    assert without_aer_broken_gates(bound) is bound  # bound angles are fine as they are


def test_controlled_rotations_are_refused_as_noise_basis_gates():
    with pytest.raises(UserError, match=r"noise\.basis_gates \['crz'\]"):
        NoiseSpec(basis_gates=("rz", "sx", "crz"))
