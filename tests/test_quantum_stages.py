"""ReuploadPQC and SimulatedQuantumEncoders: widths, gradients, backends, errors."""

import pytest
import torch
from qiskit import QuantumCircuit

from hqc.quantum.reupload import ReuploadPQC
from hqc.quantum.sqe import SimulatedQuantumEncoders
from hqc.stages import Core, Projection


@pytest.mark.parametrize(
    ("kwargs", "width"),
    [
        ({}, 1),
        ({"measured_qubits": [0, 3, 1]}, 3),
        ({"observables": ["IIZZ", "XIII"], "measured_qubits": [0, 1, 2]}, 2),
        ({"ansatz": "nearest_neighbour", "shared": True}, 1),
        ({"ansatz": "efficient_su2", "encoding": "rx", "reuploads": 1, "layers": 0}, 1),
    ],
)
def test_reupload_widths_and_gradients(kwargs, width):
    stage = ReuploadPQC(**kwargs)
    assert isinstance(stage, Core)
    assert stage.build(4, 2) == width
    assert isinstance(stage.circuit, QuantumCircuit)
    assert stage.circuit.num_qubits == 4
    x = torch.rand(5, 4, requires_grad=True)
    out = stage(x)
    assert out.shape == (5, width)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert stage.layer.weight.grad.abs().sum() > 0


def test_reupload_paper_figure_sizes():
    stage = ReuploadPQC(reuploads=1, layers=3, connectivity=2)
    stage.build(4, 2)
    assert stage.layer.weight.numel() == 2 * 28  # PQC 1 and PQC 2 of Fig. 3


def test_reupload_backends_agree():
    outputs = []
    x = torch.rand(2, 2)
    for backend in ("torch", "qiskit"):
        torch.manual_seed(3)
        stage = ReuploadPQC(layers=1, connectivity=1, backend=backend)
        stage.build(2, 2)
        outputs.append(stage(x))
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"connectivity": 4}, "connectivity"),
        ({"reuploads": 0}, "reuploads"),
        ({"layers": -1}, "layers"),
        ({"ansatz": "ring"}, "ansatz"),
        ({"encoding": "h"}, "encoding"),
        ({"measured_qubits": [4]}, "measured qubits"),
        ({"observables": ["ZZ"]}, "observables"),
        ({"backend": "gpu"}, "backend"),
    ],
)
def test_reupload_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReuploadPQC(**kwargs).build(4, 2)


@pytest.mark.parametrize(("fusion", "width"), [("concat", 2 * 4), ("mean", 4)])
def test_sqe_widths_and_gradients(fusion, width):
    stage = SimulatedQuantumEncoders(fusion=fusion, layers=1)
    assert isinstance(stage, Projection)
    assert stage.build(10, 2) == width
    assert stage.num_qubits == 4  # smallest Q with 2^Q >= 10
    assert stage.circuit.num_qubits == 4
    x = torch.randn(3, 10, requires_grad=True)
    out = stage(x)
    assert out.shape == (3, width)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for encoder in stage.encoder_layers:
        assert encoder.weight.grad.abs().sum() > 0


def test_sqe_encoders_have_own_weights():
    stage = SimulatedQuantumEncoders(encoders=3, measured=2)
    assert stage.build(8, 2) == 6
    first, second, third = (encoder.weight for encoder in stage.encoder_layers)
    assert not torch.equal(first, second) and not torch.equal(second, third)


def test_sqe_truncation():
    stage = SimulatedQuantumEncoders(qubits=2, truncate=True, connectivity=1, measured=2)
    assert stage.build(6, 2) == 4
    x = torch.randn(4, 6)
    changed = x.clone()
    changed[:, 4:] += 1.0  # features past 2^Q are dropped
    torch.testing.assert_close(stage(x), stage(changed))


def test_sqe_backends_agree():
    outputs = []
    x = torch.randn(2, 4)
    for backend in ("torch", "qiskit"):
        torch.manual_seed(5)
        stage = SimulatedQuantumEncoders(layers=1, connectivity=1, measured=2, backend=backend)
        stage.build(4, 2)
        outputs.append(stage(x))
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "in_features", "match"),
    [
        ({"qubits": 3}, 10, "truncate"),
        ({"qubits": 3}, 8, "measured qubits"),  # 3 qubits cannot give the default 4
        ({"measured": 0}, 16, "measured qubits"),
        ({"qubits": 0}, 4, "num_qubits"),
        ({"connectivity": 4}, 16, "connectivity"),
        ({"backend": "gpu"}, 16, "backend"),
    ],
)
def test_sqe_build_errors(kwargs, in_features, match):
    with pytest.raises(ValueError, match=match):
        SimulatedQuantumEncoders(**kwargs).build(in_features, 2)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"encoders": 0}, "encoders"), ({"fusion": "sum"}, "fusion")]
)
def test_sqe_init_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimulatedQuantumEncoders(**kwargs)
