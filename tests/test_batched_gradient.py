"""BatchedParamShiftEstimatorGradient: ParamShiftEstimatorGradient's values, one PUB per circuit."""

import numpy as np
import pytest
import torch
from qiskit.circuit import ParameterVector, QuantumCircuit
from qiskit.primitives import BaseEstimatorV2
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning.gradients import ParamShiftEstimatorGradient
from qiskit_machine_learning.neural_networks import EstimatorQNN

from hqc.quantum.batched_gradient import BatchedParamShiftEstimatorGradient
from hqc.quantum.circuits import reupload_circuit, z_observables
from hqc.quantum.layer import QuantumLayer
from hqc.quantum.qiskit_backend import exact_estimator


class CountingEstimator(BaseEstimatorV2):
    """Aer's exact estimator, counting the PUBs and ``run`` calls it is handed."""

    def __init__(self) -> None:
        self.inner = exact_estimator()
        self.pubs = 0
        self.calls = 0

    def run(self, pubs, *, precision=None):
        pubs = list(pubs)
        self.pubs += len(pubs)
        self.calls += 1
        return self.inner.run(pubs, precision=precision)


def _hqc_circuit():
    """hqc's amplitude-encoded re-upload layer as the qiskit backend hands it to EstimatorQNN."""
    circuit, inputs, weights = reupload_circuit(3, reuploads=2, layers=1, connectivity=2)
    layer = QuantumLayer(circuit, z_observables(3, (0, 2)), inputs, weights, "qiskit")
    program, program_inputs = layer.qiskit_circuit(bind_weights=False)
    return program, layer.observables, program_inputs, layer.weight_params


def _test_circuit():
    """A parameter reused in two gates, parameter expressions, and two-qubit rotations."""
    x = ParameterVector("x", 2)
    w = ParameterVector("w", 3)
    qc = QuantumCircuit(2)
    qc.ry(x[0], 0)
    qc.rx(2 * x[1] + w[0], 1)
    qc.rzz(w[1], 0, 1)
    qc.ry(x[0] * w[2], 1)
    qc.cx(1, 0)
    qc.rx(w[1], 0)
    observables = [SparsePauliOp("ZI"), SparsePauliOp(["XX", "IZ"], [0.5, -1.0])]
    return qc, observables, list(x), list(w)


def _qnn(spec, gradient_type, input_gradients):
    circuit, observables, inputs, weights = spec
    estimator = CountingEstimator()
    qnn = EstimatorQNN(
        circuit=circuit,
        estimator=estimator,
        observables=list(observables),
        input_params=list(inputs),
        weight_params=list(weights),
        gradient=gradient_type(estimator),
        input_gradients=input_gradients,
        default_precision=0.0,
    )
    return qnn, estimator


@pytest.mark.parametrize("build", [_hqc_circuit, _test_circuit])
@pytest.mark.parametrize("input_gradients", [False, True])
def test_equals_param_shift_with_one_pub_per_batch(build, input_gradients):
    spec = build()
    batched, counter = _qnn(spec, BatchedParamShiftEstimatorGradient, input_gradients)
    reference, reference_counter = _qnn(spec, ParamShiftEstimatorGradient, input_gradients)
    rng = np.random.default_rng(3)
    x = rng.uniform(-np.pi, np.pi, (5, batched.num_inputs))
    x[3] = x[1]  # a repeated sample is simulated once and still gets its gradient
    w = rng.uniform(-np.pi, np.pi, batched.num_weights)
    got_inputs, got_weights = batched.backward(x, w)
    want_inputs, want_weights = reference.backward(x, w)
    np.testing.assert_allclose(got_weights, want_weights, rtol=0, atol=1e-12)
    assert np.abs(got_weights).max() > 1e-2  # a real, non-trivial gradient
    if input_gradients:
        np.testing.assert_allclose(got_inputs, want_inputs, rtol=0, atol=1e-12)
    else:
        assert got_inputs is None and want_inputs is None
    assert counter.calls == 1 and counter.pubs == 1
    assert reference_counter.pubs > 5 * 2  # the reference really is one PUB per sample and shift


def test_one_pub_per_circuit_when_circuits_differ():
    qc, observables, inputs, weights = _test_circuit()
    other = qc.copy()
    other.h(0)
    estimator = CountingEstimator()
    params = [inputs + weights] * 3
    values = np.random.default_rng(0).uniform(-1, 1, (3, len(params[0])))
    args = ([qc, other, qc], [observables[0], observables[1], observables[1]], values, params)
    got = BatchedParamShiftEstimatorGradient(estimator).run(*args).result().gradients
    want = ParamShiftEstimatorGradient(exact_estimator()).run(*args).result().gradients
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=0, atol=1e-12)
    assert estimator.calls == 1 and estimator.pubs == 2


def test_qiskit_backend_uses_it_and_trains():
    circuit, inputs, weights = reupload_circuit(2, reuploads=1, layers=1, connectivity=1)
    layer = QuantumLayer(circuit, z_observables(2), inputs, weights, "qiskit")
    assert isinstance(layer.qnn.gradient, BatchedParamShiftEstimatorGradient)
    x = torch.rand(4, len(inputs), requires_grad=True)
    layer(x).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().max() > 1e-3
    assert x.grad is not None and x.grad.abs().max() > 1e-3
