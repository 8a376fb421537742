"""TorchQNNNetwork: qiskit-ml's NeuralNetwork contract, equal to EstimatorQNN; TorchConnector."""

from pathlib import Path

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import ParameterVector
from qiskit.primitives import StatevectorEstimator
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning.connectors import TorchConnector
from qiskit_machine_learning.neural_networks import EstimatorQNN
from torch import nn

from hqc.main import main
from hqc.quantum import QuantumLayer, TorchQNNNetwork
from hqc.quantum.circuits import amplitude_encode, ansatz, reupload_circuit, z_observables

ROOT = Path(__file__).parents[1]


def _paper():
    circuit, inputs, weights = reupload_circuit(4, reuploads=2, layers=2, connectivity=2)
    return circuit, z_observables(4, [0, 1]), list(inputs), list(weights)


def _built_here():
    """Complex gates, a non-affine angle, entangling rotations and a multi-term observable."""
    x, w = ParameterVector("x", 2), ParameterVector("w", 5)
    qc = QuantumCircuit(3)
    qc.h(range(3))
    qc.rx(x[0], 0)
    qc.rz(2 * x[1] + 0.3, 1)
    qc.crz(w[0], 0, 2)
    qc.rxx(w[1], 1, 2)
    qc.ry(x[0] * x[1], 2)
    qc.u(w[2], w[3], w[4], 1)
    qc.cx(2, 0)
    observables = [SparsePauliOp(["ZZI", "XIY"], [0.7, -0.4]), SparsePauliOp("IIZ")]
    return qc, observables, list(x), list(w)


@pytest.mark.parametrize("build", [_paper, _built_here], ids=["paper", "built_here"])
@pytest.mark.parametrize("input_gradients", [True, False])
def test_forward_backward_equal_estimator_qnn(build, input_gradients):
    circuit, observables, inputs, weights = build()
    reference = EstimatorQNN(
        circuit=circuit,
        estimator=StatevectorEstimator(),  # exact; Aer's drops controlled-rotation angles
        observables=observables,
        input_params=inputs,
        weight_params=weights,
        input_gradients=input_gradients,
        default_precision=0.0,
    )
    network = TorchQNNNetwork(circuit, observables, inputs, weights, input_gradients)
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, (5, len(inputs)))
    w = rng.uniform(-3, 3, len(weights))

    out = network.forward(x, w)
    assert out.shape == (5, len(observables))
    np.testing.assert_allclose(out, reference.forward(x, w), atol=1e-10, rtol=0)
    input_grad, weight_grad = network.backward(x, w)
    ref_input_grad, ref_weight_grad = reference.backward(x, w)
    assert weight_grad.shape == (5, len(observables), len(weights))
    np.testing.assert_allclose(weight_grad, ref_weight_grad, atol=1e-10, rtol=0)
    if input_gradients:
        assert input_grad.shape == (5, len(observables), len(inputs))
        np.testing.assert_allclose(input_grad, ref_input_grad, atol=1e-10, rtol=0)
    else:
        assert input_grad is None and ref_input_grad is None
    assert np.abs(weight_grad).max() > 1e-3  # the comparison is not between zeros


def _trained(backend: str, steps: int = 5) -> list[torch.Tensor]:
    """A Linear → QuantumLayer model after ``steps`` SGD steps, from one seed.

    SGD, not Adam: Adam scales the paper circuit's zero gradients (weights after the last gate
    on unmeasured qubits) to full steps, turning float32 round-off into different weights.
    """
    circuit, observables, inputs, weights = _paper()
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 4), nn.Tanh(), QuantumLayer(circuit, observables, inputs, weights, backend)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 6, generator=generator), torch.rand(8, 2, generator=generator)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def test_torch_connector_trains_to_the_torch_backend_weights():
    torch_weights = _trained("torch")
    connector_weights = _trained("torchconnector")
    start = _trained("torch", steps=0)
    assert len(torch_weights) == len(connector_weights) == 3
    for a, b, s in zip(torch_weights, connector_weights, start, strict=True):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(b, a, atol=2e-5, rtol=0)
        assert (a - s).abs().max() > 1e-2  # both trained: every tensor moved


def test_amplitude_encoded_layer_matches_torch_backend():
    circuit, weights = ansatz("long_range", 3, layers=1, connectivity=2)
    observables = z_observables(3, [0, 1])
    initial = torch.rand(len(weights), dtype=torch.float64) * 6 - 3
    results = []
    for backend in ("torch", "torchconnector"):
        layer = QuantumLayer(
            circuit, observables, (), weights, backend, initial, amplitude_encoded=True
        ).double()
        embedding = torch.randn(
            3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
        )
        embedding.requires_grad_(True)
        out = layer(embedding.new_empty(3, 0), amplitude_encode(embedding, 3))
        (out * torch.arange(1.0, 7.0, dtype=torch.float64).view(3, 2)).sum().backward()
        results.append((out.detach(), embedding.grad, layer.weight.grad))
    assert isinstance(layer.net, TorchConnector)
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b.double(), a, atol=1e-5, rtol=0)


def test_backend_torchconnector_fits_from_the_cli(tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HQC_CACHE_DIR", str(tmp_path / "cache"))
    cli = main([
        "fit", "--config", str(ROOT / "configs/hybrid.yaml"),
        "--data.init_args.source", str(tiny_data_dir),
        "--data.init_args.per_class", "4",
        "--data.init_args.batch_size", "4",
        "--trainer.default_root_dir", str(tmp_path),
        "--trainer.enable_progress_bar", "false",
        "--trainer.fast_dev_run", "1",
        "--model.init_args.projection.init_args.backend", "torchconnector",
        "--model.init_args.core.init_args.backend", "torchconnector",
    ])  # fmt: skip
    assert cli.trainer.state.finished and "test/acc" in cli.trainer.callback_metrics
    model = cli.model
    assert isinstance(model.core.layer.net, TorchConnector)
    assert isinstance(model.core.layer.qnn, TorchQNNNetwork)
    sqe_layers = [m for m in model.projection.modules() if isinstance(m, QuantumLayer)]
    assert sqe_layers and all(isinstance(m.net, TorchConnector) for m in sqe_layers)
