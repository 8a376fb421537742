"""DensityQNN: noisy expectations agree with Aer's density_matrix method; exact without noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Parameter, ParameterVector
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer import AerSimulator
from qiskit_aer.noise import (
    NoiseModel,
    QuantumError,
    ReadoutError,
    amplitude_damping_error,
    depolarizing_error,
    pauli_error,
    thermal_relaxation_error,
)
from qiskit_aer.primitives import EstimatorV2

from hqc.errors import UserError
from hqc.noise.aer import noise_model
from hqc.noise.spec import NoiseSpec
from hqc.quantum.density import DensityQNN
from hqc.quantum.torch_qnn import TorchQNN

BASIS = ["rx", "ry", "rz", "cx"]
RELAX_1Q = thermal_relaxation_error(50e-6, 30e-6, 2e-6)
RELAX_2Q = thermal_relaxation_error(50e-6, 30e-6, 5e-6).tensor(
    thermal_relaxation_error(70e-6, 60e-6, 5e-6)
)
CHANNELS: dict[str, dict[str, QuantumError]] = {
    "depolarising_1q": {"rx": depolarizing_error(0.04, 1), "ry": depolarizing_error(0.1, 1)},
    "depolarising_2q": {"cx": depolarizing_error(0.08, 2)},
    "thermal_relaxation": {"rz": RELAX_1Q, "ry": RELAX_1Q, "cx": RELAX_2Q},
    "amplitude_damping": {"rx": amplitude_damping_error(0.2)},  # not unital, not symmetric
    "all": {
        "rx": depolarizing_error(0.03, 1).compose(RELAX_1Q),
        "ry": depolarizing_error(0.05, 1),
        "rz": RELAX_1Q,
        "cx": depolarizing_error(0.06, 2).compose(RELAX_2Q),
    },
}


def random_circuit(
    n: int, depth: int, rng: np.random.Generator
) -> tuple[QuantumCircuit, ParameterVector, ParameterVector]:
    """Random gates (rotations with affine angles, H, SX, CX, CZ, RZZ, U) on ``n`` qubits."""
    x, w = ParameterVector("x", n), ParameterVector("w", 2 * n)
    qc = QuantumCircuit(n)
    for q in range(n):
        qc.ry(x[q], q)
    for i in range(depth):
        a, b = (int(v) for v in rng.choice(n, 2, replace=False))
        angle = float(rng.uniform(-2, 2)) * x[i % n] + float(rng.uniform(-1, 1))
        weight = 2 * w[i % (2 * n)] - 0.5
        kind = i % 8
        if kind == 0:
            qc.rx(angle, a)
        elif kind == 1:
            qc.cx(a, b)
        elif kind == 2:
            qc.rz(weight, a)
        elif kind == 3:
            qc.rzz(weight, a, b)
        elif kind == 4:
            qc.h(a)
            qc.sx(b)
        elif kind == 5:
            qc.cz(b, a)
        elif kind == 6:
            qc.u(weight, angle, 0.3, a)
        else:
            qc.ry(weight + angle, b)
    for i, p in enumerate(w):  # every weight appears at least once
        qc.ry(p, i % n)
    return qc, x, w


def random_observables(n: int, rng: np.random.Generator, z_only: bool) -> list[SparsePauliOp]:
    """Three random Pauli sums on ``n`` qubits (with X and Y unless ``z_only``)."""
    letters = "IZ" if z_only else "IXYZ"
    return [
        SparsePauliOp(
            ["".join(rng.choice(list(letters), n)) for _ in range(3)], rng.uniform(-1, 1, 3)
        )
        for _ in range(3)
    ]


def aer_values(
    circuit: QuantumCircuit,
    observables: list[SparsePauliOp],
    params: list[Parameter],
    values: np.ndarray,
    model: NoiseModel,
) -> np.ndarray:
    """Exact noisy expectations from Aer's EstimatorV2 on the density-matrix method."""
    estimator = EstimatorV2(
        options={
            "default_precision": 0.0,
            "backend_options": {"method": "density_matrix", "noise_model": model},
        }
    )
    order = [params.index(p) for p in circuit.parameters]
    pubs = [(circuit, o, values[:, order]) for o in observables]
    return np.stack([r.data.evs for r in estimator.run(pubs).result()], 1)


def model_from(errors: dict[str, QuantumError]) -> NoiseModel:
    model = NoiseModel(basis_gates=BASIS)
    for name, error in errors.items():
        model.add_all_qubit_quantum_error(error, name)
    return model


def values_for(x: ParameterVector, w: ParameterVector, batch: int, rng: np.random.Generator):
    inputs = rng.uniform(-np.pi, np.pi, (batch, len(x)))
    weights = rng.uniform(-np.pi, np.pi, len(w))
    return inputs, weights, np.concatenate([inputs, np.tile(weights, (batch, 1))], 1)


def double(module: DensityQNN | TorchQNN, weights: np.ndarray) -> DensityQNN | TorchQNN:
    """``module`` in float64 with exactly ``weights`` (the constructor rounds to float32)."""
    module = module.double()
    module.weight.data = torch.tensor(weights)
    return module


@pytest.mark.parametrize("channel", sorted(CHANNELS))
@pytest.mark.parametrize("n", [2, 3, 5])
def test_matches_aer_density_matrix(channel: str, n: int) -> None:
    rng = np.random.default_rng(n * 100 + len(channel))
    qc, x, w = random_circuit(n, 4 * n, rng)
    transpiled = transpile(qc, basis_gates=BASIS, optimization_level=0)
    observables = random_observables(n, rng, z_only=False)
    inputs, weights, values = values_for(x, w, 3, rng)
    errors = CHANNELS[channel]
    qnn = double(DensityQNN.from_errors(transpiled, observables, x, w, errors), weights)
    got = qnn(torch.tensor(inputs)).detach().numpy()
    want = aer_values(transpiled, observables, [*x, *w], values, model_from(errors))
    np.testing.assert_allclose(got, want, atol=1e-9)
    ideal = double(DensityQNN(qc, observables, x, w), weights)(torch.tensor(inputs))
    assert np.abs(ideal.detach().numpy() - want).max() > 1e-3  # the noise matters here


def test_noise_spec_matches_aer_noise_model() -> None:
    """``noise=spec`` builds the same channels and transpiled circuit as hqc's Aer model."""
    rng = np.random.default_rng(7)
    spec = NoiseSpec(
        gate_error_1q=0.01,
        gate_error_2q=0.05,
        t1=40e-6,
        t2=30e-6,
        gate_time_1q=1e-6,
        gate_time_2q=4e-6,
    )
    qc, x, w = random_circuit(4, 12, rng)
    observables = random_observables(4, rng, z_only=False)
    inputs, weights, values = values_for(x, w, 4, rng)
    qnn = double(DensityQNN(qc, observables, x, w, noise=spec), weights)
    transpiled = transpile(qc, basis_gates=list(spec.basis_gates), optimization_level=0)
    want = aer_values(transpiled, observables, [*x, *w], values, noise_model(spec))
    np.testing.assert_allclose(qnn(torch.tensor(inputs)).detach().numpy(), want, atol=1e-9)


def test_readout_equals_bit_flips_before_measurement() -> None:
    """Symmetric readout error on Z strings = a bit-flip channel on every qubit at the end."""
    rng = np.random.default_rng(3)
    p = 0.07
    qc, x, w = random_circuit(3, 10, rng)
    transpiled = transpile(qc, basis_gates=BASIS, optimization_level=0)
    observables = random_observables(3, rng, z_only=True)
    inputs, weights, values = values_for(x, w, 3, rng)
    errors = CHANNELS["all"]
    qnn = DensityQNN.from_errors(transpiled, observables, x, w, errors, readout_error=p)
    got = double(qnn, weights)(torch.tensor(inputs)).detach().numpy()
    flipped = transpiled.copy()
    for q in range(3):
        flipped.append(pauli_error([("X", p), ("I", 1 - p)]).to_instruction(), [q])
    want = aer_values(flipped, observables, [*x, *w], values, model_from(errors))
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_readout_matches_aer_shots() -> None:
    """Aer's own readout error on sampled outcomes gives <Z0 Z1> within 5 sigma of ours."""
    p, shots = 0.1, 200_000
    qc = QuantumCircuit(2)
    qc.ry(0.4, 0)
    qc.cx(0, 1)
    qc.rx(0.9, 1)
    transpiled = transpile(qc, basis_gates=BASIS, optimization_level=0)
    observable = SparsePauliOp("ZZ")
    errors = {"cx": depolarizing_error(0.05, 2)}
    qnn = DensityQNN.from_errors(transpiled, observable, (), (), errors, readout_error=p).double()
    ours = qnn(torch.zeros(1, 0)).item()
    model = model_from(errors)
    model.add_all_qubit_readout_error(ReadoutError([[1 - p, p], [p, 1 - p]]))
    measured = transpiled.measure_all(inplace=False)
    sim = AerSimulator(method="density_matrix", noise_model=model, seed_simulator=11)
    counts = sim.run(measured, shots=shots).result().get_counts()
    parity = sum(c * (-1) ** key.count("1") for key, c in counts.items()) / shots
    sigma = np.sqrt((1 - parity**2) / shots)
    without = DensityQNN.from_errors(transpiled, observable, (), (), errors).double()
    assert abs(ours - parity) < 5 * sigma
    assert abs(without(torch.zeros(1, 0)).item() - parity) > 20 * sigma  # readout is visible


@pytest.mark.parametrize("n", [1, 3, 4])
def test_noise_free_equals_torch_qnn(n: int) -> None:
    rng = np.random.default_rng(n)
    if n == 1:
        x, w = ParameterVector("x", 1), ParameterVector("w", 2)
        qc = QuantumCircuit(1)
        qc.rx(x[0], 0)
        qc.ry(w[0], 0)
        qc.rz(w[1] + x[0], 0)
    else:
        qc, x, w = random_circuit(n, 5 * n, rng)
    observables = random_observables(n, rng, z_only=False)
    inputs, weights, _ = values_for(x, w, 5, rng)
    states = torch.tensor(rng.normal(size=(5, 2**n)) + 1j * rng.normal(size=(5, 2**n)))
    states = states / states.norm(dim=1, keepdim=True)
    ours = double(DensityQNN(qc, observables, x, w), weights)
    exact = double(TorchQNN(qc, observables, x, w), weights)
    batch = torch.tensor(inputs)
    torch.testing.assert_close(ours(batch), exact(batch), atol=1e-10, rtol=0)
    torch.testing.assert_close(ours(batch, states), exact(batch, states), atol=1e-10, rtol=0)


def test_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(5)
    qc, x, w = random_circuit(3, 12, rng)
    transpiled = transpile(qc, basis_gates=BASIS, optimization_level=0)
    observables = random_observables(3, rng, z_only=True)
    inputs, weights, _ = values_for(x, w, 2, rng)
    qnn = DensityQNN.from_errors(transpiled, observables, x, w, CHANNELS["all"], 0.05)
    qnn = double(qnn, weights)

    def run(inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(qnn, {"weight": weights}, (inputs,))

    args = (torch.tensor(inputs, requires_grad=True), torch.tensor(weights, requires_grad=True))
    assert torch.autograd.gradcheck(run, args, eps=1e-6, atol=1e-7)


def test_trains_under_noise() -> None:
    """Adam on the noisy module recovers a noisy teacher's outputs (gradients are usable)."""
    torch.manual_seed(0)
    x, w = ParameterVector("x", 2), ParameterVector("w", 4)
    qc = QuantumCircuit(2)
    qc.ry(x[0], 0)
    qc.ry(x[1], 1)
    qc.cx(0, 1)
    qc.ry(w[0], 0)
    qc.ry(w[1], 1)
    qc.cx(1, 0)
    qc.rx(w[2], 0)
    qc.rz(w[3], 1)
    spec = NoiseSpec(gate_error_1q=0.01, gate_error_2q=0.05, readout_error=0.02)
    observables = [SparsePauliOp("IZ"), SparsePauliOp("ZI")]
    inputs = torch.rand(16, 2) * 3
    teacher = DensityQNN(qc, observables, x, w, spec, torch.tensor([0.5, -1.0, 2.0, 0.3]))
    with torch.no_grad():
        target = teacher(inputs)
    qnn = DensityQNN(qc, observables, x, w, noise=spec)
    optimiser = torch.optim.Adam(qnn.parameters(), lr=0.1)
    losses = []
    for _ in range(60):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(qnn(inputs), target)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]


def test_empty_batch_gives_empty_output() -> None:
    """As TorchQNN: a batch of 0 rows gives ``(0, n_observables)`` and a zero weight gradient."""
    qc, x, w = random_circuit(2, 4, np.random.default_rng(0))
    qnn = DensityQNN(qc, random_observables(2, np.random.default_rng(0), False), x, w)
    out = qnn(torch.zeros(0, 2))
    assert out.shape == (0, 3)
    out.sum().backward()
    assert qnn.weight.grad is not None and not qnn.weight.grad.any()


def test_bad_settings_raise() -> None:
    qc, x, w = random_circuit(2, 4, np.random.default_rng(0))
    with pytest.raises(UserError, match="observable 0 must be a SparsePauliOp on the circuit's 2"):
        DensityQNN(qc, [SparsePauliOp("ZZZ")], x, w)
    with pytest.raises(UserError, match="at least one observable"):
        DensityQNN(qc, [], x, w)
    spec = NoiseSpec(readout_error=0.01)
    with pytest.raises(UserError, match=r"observables \[1\] contain X or Y"):
        DensityQNN(qc, [SparsePauliOp("ZI"), SparsePauliOp("XZ")], x, w, noise=spec)
    with pytest.raises(UserError, match="in neither input_params nor weight_params"):
        DensityQNN(qc, SparsePauliOp("ZI"), x, w[:1])
    with pytest.raises(UserError, match="fake backend"):
        DensityQNN(qc, SparsePauliOp("ZI"), x, w, noise="fake:FakeFez")
    a, b = Parameter("a"), Parameter("b")
    square = QuantumCircuit(1)
    square.rx(a * b, 0)
    with pytest.raises(UserError, match="not affine"):
        DensityQNN(square, SparsePauliOp("Z"), [a], [b])
    with pytest.raises(ValueError, match=r"inputs must have shape \(batch, 2\)"):
        DensityQNN(qc, SparsePauliOp("ZI"), x, w)(torch.zeros(3, 1))


def test_real_circuit_runs_real_and_matches_aer() -> None:
    """hqc's RY/CX circuits under depolarising + relaxation keep ρ real (the fast path)."""
    from hqc.quantum.circuits import reupload_circuit, z_observables

    qc, x, w = reupload_circuit(3, reuploads=1, layers=1)
    observables = [*z_observables(3, (0, 2)), SparsePauliOp("ZXZ")]
    transpiled = transpile(qc, basis_gates=BASIS, optimization_level=0)
    rng = np.random.default_rng(2)
    inputs, weights, values = values_for(x, w, 4, rng)
    errors = {"ry": CHANNELS["all"]["ry"], "cx": CHANNELS["all"]["cx"]}
    qnn = double(DensityQNN.from_errors(transpiled, observables, x, w, errors), weights)
    assert qnn.real
    want = aer_values(transpiled, observables, [*x, *w], values, model_from(errors))
    np.testing.assert_allclose(qnn(torch.tensor(inputs)).detach().numpy(), want, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layer_noise_in_a_complex_basis_keeps_imaginary_parts(dtype) -> None:
    """sx/rz (IBM's basis) give complex superoperators: moving the density module to the
    layer's dtype must not cast them to real (it once did: a noise-free heron-basis head was
    0.84 off in <Z>, and every head under the ibm_heron preset tested at chance)."""
    from hqc.quantum.circuits import reupload_circuit, z_observables
    from hqc.quantum.execution import Execution
    from hqc.quantum.layer import QuantumLayer

    circuit, inputs, weights = reupload_circuit(4, reuploads=2, layers=2, connectivity=2)
    torch.manual_seed(0)
    layer = QuantumLayer(circuit, z_observables(4, [0, 1]), inputs, weights).to(dtype)
    x = torch.rand(6, 4, dtype=dtype) * 3
    exact = layer(x)
    for basis in (["rz", "sx", "x", "cz"], ["rx", "ry", "rz", "cx"]):
        layer.set_execution(Execution(noise=NoiseSpec(basis_gates=basis, virtual_gates=["rz"])))
        tol = 1e-10 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(layer(x), exact, atol=tol, rtol=0)
        layer.set_execution(Execution())
