"""Circuit builders: parameter counts, gate structure, amplitude encoding, observables, errors."""

import math

import numpy as np
import pytest
import torch
from qiskit.circuit import ParameterExpression
from qiskit.quantum_info import SparsePauliOp, Statevector

from hqc.quantum.circuits import (
    amplitude_encode,
    amplitude_loader,
    amplitude_loader_angles,
    amplitude_qubits,
    angle_encoding,
    ansatz,
    num_ansatz_parameters,
    pauli_observables,
    reupload_circuit,
    z_observables,
)


def _two_qubit_pairs(circuit):
    return [
        tuple(circuit.find_bit(q).index for q in inst.qubits)
        for inst in circuit.data
        if inst.operation.name == "cx"
    ]


@pytest.mark.parametrize(
    ("name", "q", "c", "m", "expected"),
    [
        ("long_range", 4, 2, 3, 28),  # the paper's Fig. 3
        ("long_range", 5, 3, 2, 2 * 5 * 3 + 5),
        ("long_range", 3, 1, 0, 3),
        ("nearest_neighbour", 4, 2, 3, 3 * 3 + 4),
        ("nearest_neighbour", 1, 1, 2, 1),
        ("efficient_su2", 4, 2, 3, 2 * 4 * 4),
    ],
)
def test_ansatz_parameter_counts(name, q, c, m, expected):
    circuit, weights = ansatz(name, q, m, c)
    assert num_ansatz_parameters(name, q, m, c) == expected
    assert len(weights) == circuit.num_parameters == expected
    assert set(circuit.parameters) == set(weights)


def test_long_range_structure():
    circuit, _ = ansatz("long_range", 4, layers=1, connectivity=2)
    assert dict(circuit.count_ops()) == {"cx": 8, "ry": 12}
    assert _two_qubit_pairs(circuit) == [
        (0, 1), (1, 2), (2, 3), (3, 0),  # d = 1, wrapping around
        (0, 2), (1, 3), (2, 0), (3, 1),  # d = 2
    ]  # fmt: skip
    # every CX is followed by R_Y on its target
    ops = circuit.data
    for i, inst in enumerate(ops[:16]):
        if inst.operation.name == "cx":
            assert ops[i + 1].operation.name == "ry"
            assert ops[i + 1].qubits[0] == inst.qubits[1]
    # the final column: one R_Y per qubit
    assert [circuit.find_bit(inst.qubits[0]).index for inst in ops[-4:]] == [0, 1, 2, 3]


def test_nearest_neighbour_structure():
    circuit, _ = ansatz("nearest_neighbour", 4, layers=2)
    assert _two_qubit_pairs(circuit) == [(0, 1), (1, 2), (2, 3)] * 2
    assert dict(circuit.count_ops()) == {"cx": 6, "ry": 10}


def test_efficient_su2_gates():
    circuit, _ = ansatz("efficient_su2", 3, layers=2)
    assert dict(circuit.count_ops()) == {"ry": 9, "rz": 9, "cx": 4}


@pytest.mark.parametrize("gate", ["ry", "rx", "rz"])
def test_angle_encoding(gate):
    circuit, inputs = angle_encoding(3, gate=gate, scale=math.pi)
    assert [inst.operation.name for inst in circuit.data] == [gate] * 3
    assert isinstance(circuit.data[0].operation.params[0], ParameterExpression)
    bound = circuit.assign_parameters([0.5, 0.25, 1.0])
    assert [float(inst.operation.params[0]) for inst in bound.data] == pytest.approx(
        [math.pi / 2, math.pi / 4, math.pi]
    )
    assert list(circuit.parameters) == list(inputs)


@pytest.mark.parametrize(("shared", "expected"), [(False, 3 * 20 + 20), (True, 20 + 20)])
def test_reupload_parameter_counts(shared, expected):
    circuit, inputs, weights = reupload_circuit(
        4, reuploads=3, layers=2, connectivity=2, shared=shared
    )
    assert num_ansatz_parameters("long_range", 4, 2, 2) == 20
    assert len(weights) == expected
    assert len(inputs) == 4
    assert circuit.num_parameters == expected + 4


def test_reupload_structure():
    circuit, inputs, weights = reupload_circuit(3, reuploads=2, layers=1, connectivity=1)
    names = [inst.operation.name for inst in circuit.data]
    per_pqc = num_ansatz_parameters("long_range", 3, 1, 1)
    pqc_ops = 2 * per_pqc - 3  # a CX before every R_Y but the final column
    # block: 3 encoding R_Y then PQC 1; twice; then PQC 2
    assert len(names) == 2 * (3 + pqc_ops) + pqc_ops
    uses = [inst.operation.params[0] for inst in circuit.data if inst.operation.params]
    for x in inputs:
        assert uses.count(x) == 2  # each input is re-uploaded in both blocks
    for w in weights:
        assert uses.count(w) == 1  # separate PQC 1 weights per block


def test_reupload_shared_reuses_pqc1_weights():
    circuit, _, weights = reupload_circuit(3, reuploads=3, layers=1, connectivity=1, shared=True)
    uses = [inst.operation.params[0] for inst in circuit.data if inst.operation.params]
    per_pqc = len(weights) // 2
    assert all(uses.count(w) == 3 for w in weights[:per_pqc])
    assert all(uses.count(w) == 1 for w in weights[per_pqc:])


def test_amplitude_encode_normalises_and_pads():
    x = torch.tensor([[3.0, 4.0, 0.0], [1.0, 1.0, 1.0]])
    states = amplitude_encode(x, 2)
    assert states.shape == (2, 4)
    assert torch.allclose(states[0], torch.tensor([0.6, 0.8, 0.0, 0.0]))
    assert torch.allclose(states.norm(dim=-1), torch.ones(2))
    assert states[1, 3] == 0


def test_amplitude_encode_truncates_then_normalises():
    x = torch.tensor([[3.0, 4.0, 100.0]])
    with pytest.raises(ValueError, match="truncate"):
        amplitude_encode(x, 1)
    assert torch.allclose(amplitude_encode(x, 1, truncate=True), torch.tensor([[0.6, 0.8]]))


def test_amplitude_encode_rejects_zero_rows():
    with pytest.raises(ValueError, match="all-zero"):
        amplitude_encode(torch.zeros(1, 4), 2)


def test_amplitude_qubits():
    assert [amplitude_qubits(d) for d in (1, 2, 3, 4, 5, 384, 768)] == [1, 1, 2, 2, 3, 9, 10]


@pytest.mark.parametrize("q", [1, 2, 3, 4])
def test_amplitude_loader_prepares_real_states(q):
    circuit, angles = amplitude_loader(q)
    assert len(angles) == 2**q - 1
    assert set(circuit.count_ops()) <= {"ry", "cx"}
    x = torch.randn(3, 2**q, dtype=torch.float64)
    x[1, : 2 ** (q - 1)] = 0  # a zero sub-tree
    x[2, -1] = 0
    states = amplitude_encode(x, q)
    for state, theta in zip(states, amplitude_loader_angles(states), strict=True):
        prepared = Statevector(circuit.assign_parameters(theta.numpy())).data
        np.testing.assert_allclose(prepared, state.numpy(), atol=1e-12)


def test_amplitude_loader_angles_gradient_is_finite_with_padding():
    x = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    angles = amplitude_loader_angles(amplitude_encode(x, 4))
    (grad,) = torch.autograd.grad(angles.sin().sum(), x)
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0


def test_z_observables():
    ops = z_observables(3, [2, 0])
    assert [str(op.paulis[0]) for op in ops] == ["ZII", "IIZ"]
    assert [str(op.paulis[0]) for op in z_observables(4)] == ["IIIZ"]


def test_pauli_observables():
    ops = pauli_observables(2, ["ZZ", SparsePauliOp(["XI", "IY"], [0.5, 0.5])])
    assert len(ops) == 2
    assert ops[0] == SparsePauliOp("ZZ")


@pytest.mark.parametrize(
    ("build", "setting"),
    [
        (lambda: ansatz("long_range", 0, 1), "num_qubits"),
        (lambda: ansatz("long_range", 4, 1, connectivity=0), "connectivity"),
        (lambda: ansatz("long_range", 4, 1, connectivity=4), "connectivity"),
        (lambda: ansatz("long_range", 1, 1, connectivity=1), "connectivity"),
        (lambda: ansatz("long_range", 4, -1), "layers"),
        (lambda: ansatz("ring", 4, 1), "ansatz"),
        (lambda: reupload_circuit(4, reuploads=0), "reuploads"),
        (lambda: reupload_circuit(4, layers=-1), "layers"),
        (lambda: reupload_circuit(4, connectivity=4), "connectivity"),
        (lambda: reupload_circuit(4, ansatz="ring"), "ansatz"),
        (lambda: reupload_circuit(4, encoding="h"), "encoding gate"),
        (lambda: angle_encoding(2, gate="rzz"), "encoding gate"),
        (lambda: angle_encoding(0), "num_qubits"),
        (lambda: z_observables(4, [4]), "measured qubits"),
        (lambda: z_observables(4, [-1]), "measured qubits"),
        (lambda: z_observables(4, []), "measured qubits"),
        (lambda: pauli_observables(4, ["ZZ"]), "observables"),
        (lambda: pauli_observables(2, ["QZ"]), "observables"),
        (lambda: pauli_observables(2, []), "observables"),
        (lambda: amplitude_encode(torch.ones(1, 3), 0), "num_qubits"),
        (lambda: amplitude_loader_angles(torch.ones(1, 3)), "2\\^Q"),
        (lambda: amplitude_loader_angles(torch.ones(1, 2, dtype=torch.complex64)), "real"),
    ],
)
def test_bad_settings_raise(build, setting):
    with pytest.raises(ValueError, match=setting):
        build()
