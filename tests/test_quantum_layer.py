"""QuantumLayer: the torch and Qiskit backends agree with each other and with Statevector.

The Qiskit backend is slow (parameter-shift over every gate), so its circuits stay at 2-3 qubits
and batches at <= 4.
"""

import numpy as np
import pytest
import torch
from qiskit.quantum_info import SparsePauliOp, Statevector
from torch.func import functional_call

from hqc.quantum.circuits import (
    amplitude_encode,
    amplitude_loader_angles,
    ansatz,
    pauli_observables,
    reupload_circuit,
    z_observables,
)
from hqc.quantum.layer import QuantumLayer

OBSERVABLES = ["IIZ", "ZII", "XIX", "IZZ"]  # mixed, to check the output order


def _reupload(q=3):
    circuit, inputs, weights = reupload_circuit(q, reuploads=2, layers=1, connectivity=q - 1)
    return circuit, inputs, weights


def _pair(circuit, observables, inputs, weights, **kwargs):
    """A torch and a Qiskit layer drawn from the same seed."""
    layers = []
    for backend in ("torch", "qiskit"):
        torch.manual_seed(7)
        layers.append(QuantumLayer(circuit, observables, inputs, weights, backend, **kwargs))
    return layers


def _statevector(circuit, observables, values, initial_state=None):
    """Expectations per row of ``values`` (a parameter → value dict per row)."""
    out = []
    for b, binding in enumerate(values):
        start = Statevector.from_int(0, 2**circuit.num_qubits)
        if initial_state is not None:
            start = Statevector(initial_state[b])
        state = start.evolve(circuit.assign_parameters(binding))
        out.append([state.expectation_value(op).real for op in observables])
    return np.array(out)


def test_same_initial_weights():
    circuit, inputs, weights = _reupload()
    torch_layer, qiskit_layer = _pair(circuit, z_observables(3), inputs, weights)
    assert torch.equal(torch_layer.weight.detach(), qiskit_layer.weight.detach())
    explicit = torch.linspace(-1, 1, len(weights))
    layer = QuantumLayer(circuit, z_observables(3), inputs, weights, initial_weights=explicit)
    assert torch.allclose(layer.weight.detach(), explicit)


@pytest.mark.parametrize("batch", [1, 4])
def test_backends_agree_through_torch_connector(batch):
    """Outputs, input and weight gradients match within float32 (TorchConnector's dtype)."""
    circuit, inputs, weights = _reupload()
    observables = pauli_observables(3, OBSERVABLES[:2])
    torch_layer, qiskit_layer = _pair(circuit, observables, inputs, weights)
    x = torch.rand(batch, 3) * 3
    upstream = torch.randn(batch, 2)
    results = []
    for layer in (torch_layer, qiskit_layer):
        xi = x.clone().requires_grad_(True)
        out = layer(xi)
        (out * upstream).sum().backward()
        assert out.shape == (batch, 2)
        assert out.dtype == torch.float32
        results.append((out.detach(), xi.grad, layer.weight.grad))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def _jacobians(layer, x, w):
    """Per-sample (B, n_obs, n_in) and (B, n_obs, n_w) Jacobians of the torch layer."""
    jx, jw = torch.autograd.functional.jacobian(
        lambda xx, ww: functional_call(layer, {"net.weight": ww}, (xx,)), (x, w)
    )
    return torch.einsum("bobi->boi", jx), jw


def test_torch_backend_matches_estimator_qnn_and_statevector_in_float64():
    circuit, inputs, weights = _reupload()
    observables = pauli_observables(3, OBSERVABLES)
    torch_layer, qiskit_layer = _pair(circuit, observables, inputs, weights)
    torch_layer.double()
    x = torch.rand(3, 3, dtype=torch.float64) * 3
    w = torch.rand(len(weights), dtype=torch.float64) * 6 - 3

    out = functional_call(torch_layer, {"net.weight": w}, (x,)).detach().numpy()
    qnn = qiskit_layer.qnn
    np.testing.assert_allclose(out, qnn.forward(x.numpy(), w.numpy()), atol=1e-10, rtol=0)
    bindings = [
        {**dict(zip(inputs, row, strict=True)), **dict(zip(weights, w.tolist(), strict=True))}
        for row in x.tolist()
    ]
    expected = _statevector(circuit, observables, bindings)
    np.testing.assert_allclose(out, expected, atol=1e-10, rtol=0)

    qnn.input_gradients = True
    input_grad, weight_grad = qnn.backward(x.numpy(), w.numpy())
    jx, jw = _jacobians(torch_layer, x, w)
    np.testing.assert_allclose(jx.numpy(), input_grad, atol=1e-10, rtol=0)
    np.testing.assert_allclose(jw.numpy(), weight_grad, atol=1e-10, rtol=0)


def test_qiskit_forward_is_exact_and_deterministic():
    """No shot-like noise: the estimator runs with precision 0."""
    circuit, inputs, weights = _reupload(2)
    _, qiskit_layer = _pair(circuit, z_observables(2), inputs, weights)
    x = torch.rand(4, 2, dtype=torch.float64)
    first = qiskit_layer.qnn.forward(x.numpy(), qiskit_layer.weight.detach().numpy())
    second = qiskit_layer.qnn.forward(x.numpy(), qiskit_layer.weight.detach().numpy())
    assert np.array_equal(first, second)
    w = qiskit_layer.weight.tolist()
    bindings = [
        {**dict(zip(inputs, row, strict=True)), **dict(zip(weights, w, strict=True))}
        for row in x.tolist()
    ]
    expected = _statevector(circuit, z_observables(2), bindings)
    np.testing.assert_allclose(first, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("backend", ["torch", "qiskit"])
def test_no_input_gradient_when_input_does_not_require_grad(backend):
    circuit, inputs, weights = _reupload(2)
    layer = QuantumLayer(circuit, z_observables(2), inputs, weights, backend)
    x = torch.rand(2, 2)
    layer(x).sum().backward()
    assert x.grad is None
    assert layer.weight.grad is not None
    if backend == "qiskit":
        assert layer.qnn.input_gradients is False


def test_amplitude_encoded_layer_agrees_on_both_backends():
    circuit, weights = ansatz("long_range", 3, layers=1, connectivity=2)
    observables = z_observables(3, [0, 1])
    torch_layer, qiskit_layer = _pair(circuit, observables, (), weights, amplitude_encoded=True)
    embedding = torch.randn(3, 6, dtype=torch.float64)
    upstream = torch.randn(3, 2, dtype=torch.float64)
    results = []
    for layer in (torch_layer.double(), qiskit_layer.double()):
        e = embedding.clone().requires_grad_(True)
        states = amplitude_encode(e, 3)
        out = layer(e.new_empty(3, 0), states)
        (out * upstream).sum().backward()
        results.append((out.detach(), e.grad, layer.weight.grad))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)

    states = amplitude_encode(embedding, 3)
    w = torch_layer.weight.detach()
    bindings = [dict(zip(weights, w.tolist(), strict=True))] * 3
    expected = _statevector(circuit, observables, bindings, states.numpy())
    np.testing.assert_allclose(results[0][0].numpy(), expected, atol=1e-10, rtol=0)
    exact = qiskit_layer.qnn.forward(amplitude_loader_angles(states).numpy(), w.numpy())
    np.testing.assert_allclose(exact, expected, atol=1e-10, rtol=0)


def test_single_observable_and_dtype_follow_module():
    circuit, inputs, weights = _reupload(2)
    layer = QuantumLayer(circuit, SparsePauliOp("ZI"), inputs, weights, "qiskit").double()
    out = layer(torch.rand(1, 2, dtype=torch.float64))
    assert out.shape == (1, 1)
    assert out.dtype == torch.float64


def test_errors():
    circuit, inputs, weights = _reupload(2)
    with pytest.raises(ValueError, match="backend"):
        QuantumLayer(circuit, z_observables(2), inputs, weights, "cuda")
    layer = QuantumLayer(circuit, z_observables(2), inputs, weights)
    with pytest.raises(ValueError, match="amplitude_encoded"):
        layer(torch.rand(1, 2), torch.ones(1, 4) / 2)
    pqc, pqc_weights = ansatz("long_range", 2, 1, 1)
    encoded = QuantumLayer(pqc, z_observables(2), (), pqc_weights, "qiskit", amplitude_encoded=True)
    with pytest.raises(ValueError, match="amplitude_encoded"):
        encoded(torch.rand(1, 0))


def test_qiskit_backend_runs_controlled_rotations_of_free_angles():
    """A user circuit with crz/cp of trainable angles (Aer mis-binds them as they are) gives
    the torch backend's values and gradients on the qiskit backend."""
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    x, w = Parameter("x"), [Parameter(f"w{i}") for i in range(2)]
    circuit = QuantumCircuit(2)
    circuit.h([0, 1])
    circuit.ry(x, 0)
    circuit.crz(w[0], 0, 1)
    circuit.cp(w[1], 1, 0)
    circuit.h(1)
    torch_layer, qiskit_layer = _pair(circuit, pauli_observables(2, ["IZ", "ZI"]), [x], w)
    inputs = torch.tensor([[0.3], [-1.1], [2.0]])
    outs = []
    for layer in (torch_layer, qiskit_layer):
        out = layer(inputs)
        out.sum().backward()
        outs.append((out.detach(), layer.weight.grad.clone()))
    torch.testing.assert_close(outs[1][0], outs[0][0], atol=1e-6, rtol=0)
    torch.testing.assert_close(outs[1][1], outs[0][1], atol=1e-6, rtol=0)
    assert outs[0][1].abs().min() > 1e-3  # both angles move the outputs
