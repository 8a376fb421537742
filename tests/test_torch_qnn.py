"""TorchQNN must reproduce Qiskit's exact expectations and gradients on arbitrary circuits."""

import gc

import numpy as np
import pytest
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Gate, ParameterVector
from qiskit.circuit.library import StatePreparation, efficient_su2
from qiskit.quantum_info import SparsePauliOp, Statevector

from hqc.quantum.torch_qnn import TorchQNN
from hqc.quantum.torch_qnn import qnn as qnn_module
from hqc.quantum.torch_qnn.jacobian import jacobians
from hqc.quantum.torch_qnn.native import GateTable, library

ONE_QUBIT_FIXED = ["h", "x", "y", "z", "s", "sdg", "t", "tdg", "sx"]
TWO_QUBIT_FIXED = ["cx", "cy", "cz", "swap"]
ONE_QUBIT_ROT = ["rx", "ry", "rz", "p"]
TWO_QUBIT_ROT = ["crx", "cry", "crz", "cp", "rxx", "ryy", "rzz"]
REAL = {  # the gates with real matrices: circuits of these take the real path (and the native one)
    "1q": ["h", "x", "z"],
    "1q_rot": ["ry"],
    "2q": ["cx", "cz", "swap"],
    "2q_rot": ["cry"],
}


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny simulations gain nothing from threads, and an OpenMP region stalls on a busy core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, params=["fused", "native"])
def path(request, monkeypatch):
    """Every test on both evaluation paths: the fused torch one, and (for real circuits) the
    native kernel at every size. A test of the fused path's own machinery pins ``native=False``."""
    if request.param == "fused":
        monkeypatch.setenv("HQC_NATIVE", "0")
    else:
        assert library() is not None, "the native kernel did not build (is a C compiler installed?)"
        monkeypatch.setattr(qnn_module, "NATIVE_MAX_WORK", float("inf"))
    return request.param


def reference(qc, obs, input_params, weight_params, inputs, weights):
    """Exact expectations from Qiskit's Statevector, one row per sample."""
    rows = []
    for x in np.atleast_2d(inputs):
        values = {
            **dict(zip(input_params, x, strict=True)),
            **dict(zip(weight_params, weights, strict=True)),
        }
        bound = qc.assign_parameters(values, strict=False)
        sv = Statevector(bound)
        rows.append([sv.expectation_value(o).real for o in obs])
    return np.array(rows)


def random_angle(rng, xs, ws):
    """An affine expression of one input and one weight (or a constant)."""
    kind = rng.integers(4)
    x, w = xs[rng.integers(len(xs))], ws[rng.integers(len(ws))]
    if kind == 0:
        return float(rng.uniform(-3, 3))
    if kind == 1:
        return float(rng.uniform(0.5, 2)) * w + float(rng.uniform(-1, 1))
    if kind == 2:
        return np.pi * x - 0.5 * w
    return x + w


def random_circuit(n, depth, seed, distant=False, real=False):
    """Random supported gates; ``distant`` puts 2-qubit gates on qubits no window can hold;
    ``real`` draws only gates with real matrices."""
    rng = np.random.default_rng(seed)
    xs, ws = ParameterVector("x", n), ParameterVector("w", 2 * n)
    qc = QuantumCircuit(n)
    pick = {"1q": ONE_QUBIT_FIXED, "1q_rot": ONE_QUBIT_ROT, "2q": TWO_QUBIT_FIXED}
    pick["2q_rot"] = TWO_QUBIT_ROT
    if real:
        pick = REAL
    for _ in range(depth):
        kind = rng.integers(4) if n > 1 else rng.integers(2)
        if kind == 0:
            getattr(qc, pick["1q"][rng.integers(len(pick["1q"]))])(int(rng.integers(n)))
        elif kind == 1:
            name = pick["1q_rot"][rng.integers(len(pick["1q_rot"]))]
            getattr(qc, name)(random_angle(rng, xs, ws), int(rng.integers(n)))
        else:
            a, b = (int(q) for q in rng.choice(n, 2, replace=False))
            if distant:  # far apart on the ring: not in any 4-qubit window
                a, b = 0, n // 2
            if kind == 2:
                getattr(qc, pick["2q"][rng.integers(len(pick["2q"]))])(a, b)
            else:
                name = pick["2q_rot"][rng.integers(len(pick["2q_rot"]))]
                getattr(qc, name)(random_angle(rng, xs, ws), a, b)
    return qc, list(xs), list(ws)


def random_observables(n, seed):
    """A single-qubit Z, a random Pauli sum with X/Y terms, and a full Z string."""
    rng = np.random.default_rng(seed)
    labels = ["".join(rng.choice(list("IXYZ"), n)) for _ in range(3)]
    return [
        SparsePauliOp.from_sparse_list([("Z", [0], 1.0)], n),
        SparsePauliOp(labels, coeffs=rng.normal(size=3)),
        SparsePauliOp("Z" * n),
    ]


@pytest.mark.parametrize(
    ("n", "depth", "batch", "distant"),
    [
        (1, 12, 3, False),
        (2, 20, 1, False),
        (3, 30, 5, False),
        (5, 60, 4, False),
        (6, 80, 1, False),
        (7, 90, 3, False),
        (8, 40, 2, True),
    ],
)
def test_random_circuits_match_statevector(n, depth, batch, distant):
    qc, xs, ws = random_circuit(n, depth, seed=n * 100 + depth, distant=distant)
    obs = random_observables(n, seed=n)
    qnn = TorchQNN(qc, obs, xs, ws).double()
    inputs = torch.rand(batch, n, dtype=torch.float64) * 4 - 2
    out = qnn(inputs)
    assert out.shape == (batch, len(obs))
    expected = reference(qc, obs, xs, ws, inputs.numpy(), qnn.weight.detach().numpy())
    np.testing.assert_allclose(out.detach().numpy(), expected, atol=1e-10)


def every_gate_circuit():
    """One of every supported gate, angles given as expressions, plus composite gates."""
    x, w = ParameterVector("x", 3), ParameterVector("w", 6)
    qc = QuantumCircuit(4)
    qc.h(range(4))
    qc.rx(2 * w[0], 0)
    qc.ry(w[1] + x[0], 1)
    qc.rz(np.pi * x[1], 2)
    qc.p(w[2] - 0.3, 3)
    qc.u(w[3], x[2], 0.25, 0)
    for name in ONE_QUBIT_FIXED:
        getattr(qc, name)(1)
    qc.barrier()
    qc.cx(0, 1)
    qc.cy(1, 2)
    qc.cz(2, 3)
    qc.swap(3, 0)
    qc.crx(w[4], 0, 2)
    qc.cry(x[0] - w[5], 1, 3)
    qc.crz(3 * x[1], 3, 1)
    qc.cp(w[0] + w[1], 2, 0)
    qc.rxx(x[2], 0, 1)
    qc.ryy(0.5 * w[2], 1, 2)
    qc.rzz(x[0] + 1.0, 2, 3)
    sub = QuantumCircuit(2, name="custom")
    sub.ry(w[4], 0)
    sub.cx(0, 1)
    sub.rzx(x[1], 1, 0)  # not supported natively: expanded through its definition
    qc.append(sub.to_gate(), [3, 1])
    qc.compose(
        efficient_su2(4, reps=1, parameter_prefix="e").assign_parameters(np.linspace(0.1, 1.6, 16)),
        inplace=True,
    )
    return qc, list(x), list(w)


def test_every_gate_with_expressions_matches_statevector():
    qc, xs, ws = every_gate_circuit()
    obs = random_observables(4, seed=7)
    qnn = TorchQNN(qc, obs, xs, ws).double()
    assert not qnn.real
    inputs = torch.rand(6, 3, dtype=torch.float64) * 3
    expected = reference(qc, obs, xs, ws, inputs.numpy(), qnn.weight.detach().numpy())
    np.testing.assert_allclose(qnn(inputs).detach().numpy(), expected, atol=1e-10)


def non_affine_circuit():
    """Angles that are products and functions of inputs and weights."""
    x, w = ParameterVector("x", 2), ParameterVector("w", 2)
    qc = QuantumCircuit(2)
    qc.h([0, 1])
    qc.rzz((np.pi - x[0]) * (np.pi - x[1]), 0, 1)  # ZZFeatureMap-style data map
    qc.ry(w[0] * x[0], 0)
    qc.rx(w[1].sin() + x[1] ** 2, 1)
    return qc, list(x), list(w)


def test_non_affine_angles_match_statevector():
    qc, x, w = non_affine_circuit()
    obs = random_observables(2, seed=3)
    qnn = TorchQNN(qc, obs, x, w).double()
    inputs = torch.rand(4, 2, dtype=torch.float64)
    expected = reference(qc, obs, x, w, inputs.numpy(), qnn.weight.detach().numpy())
    np.testing.assert_allclose(qnn(inputs).detach().numpy(), expected, atol=1e-10)
    assert torch.autograd.gradcheck(lambda a, w_: qnn(a), (inputs.requires_grad_(), qnn.weight))


def test_gradcheck_inputs_and_weights():
    qc, xs, ws = random_circuit(5, 40, seed=11)
    qnn = TorchQNN(qc, random_observables(5, seed=1), xs, ws).double()
    inputs = torch.rand(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: qnn(x), (inputs, qnn.weight))


@pytest.mark.parametrize("complex_state", [False, True])
def test_gradcheck_initial_state(complex_state):
    w = ParameterVector("w", 10)
    qc = QuantumCircuit(5)
    qc.ry(w[0], 0)  # a leading 1-qubit gate: applied to the given state, not to |0>
    for i in range(5):
        qc.cx(i, (i + 1) % 5)
        qc.ry(w[i + 1], (i + 1) % 5)
    qc.rxx(w[6], 0, 3)
    obs = random_observables(5, seed=2)
    qnn = TorchQNN(qc, obs, weight_params=list(w)).double()
    dtype = torch.complex128 if complex_state else torch.float64
    state = torch.randn(2, 32, dtype=dtype, requires_grad=True)
    inputs = torch.zeros(2, 0, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda s, w_: qnn(inputs, s), (state, qnn.weight))


@pytest.mark.parametrize("complex_state", [False, True])
def test_initial_state_equals_state_preparation(complex_state):
    qc, xs, ws = random_circuit(4, 40, seed=5)
    obs = random_observables(4, seed=4)
    qnn = TorchQNN(qc, obs, xs, ws).double()
    rng = np.random.default_rng(0)
    amps = rng.normal(size=(3, 16)) + (1j * rng.normal(size=(3, 16)) if complex_state else 0)
    amps /= np.linalg.norm(amps, axis=1, keepdims=True)
    inputs = torch.rand(3, 4, dtype=torch.float64)
    out = qnn(inputs, torch.tensor(amps)).detach().numpy()
    for b in range(3):
        prep = QuantumCircuit(4)
        prep.append(StatePreparation(amps[b]), range(4))
        full = prep.compose(qc)
        expected = reference(full, obs, xs, ws, inputs[b].numpy(), qnn.weight.detach().numpy())
        np.testing.assert_allclose(out[b], expected[0], atol=1e-10)


def paper_circuit(n):
    """The paper's CNOT + RY re-uploading circuit (real gates only)."""
    x, w = ParameterVector("x", n), ParameterVector("w", 10 * n)
    qc, k = QuantumCircuit(n), 0
    for block in range(3):
        if block < 2:
            for i in range(n):
                qc.ry(x[i], i)
        k = 5 * n * (block == 2)
        for _ in range(2):
            for d in (1, 2):
                for i in range(n):
                    qc.cx(i, (i + d) % n)
                    qc.ry(w[k], (i + d) % n)
                    k += 1
        for i in range(n):
            qc.ry(w[k], i)
            k += 1
    return qc, list(x), list(w)


def test_real_path_equals_complex_path():
    qc, xs, ws = paper_circuit(6)
    obs = random_observables(6, seed=6)
    fast = TorchQNN(qc, obs, xs, ws).double()
    slow = TorchQNN(qc, obs, xs, ws, initial_weights=fast.weight.detach(), real=False).double()
    assert fast.real and not slow.real
    inputs = torch.rand(5, 6, dtype=torch.float64, requires_grad=True)
    out_fast, out_slow = fast(inputs), slow(inputs)
    torch.testing.assert_close(out_fast, out_slow, atol=1e-12, rtol=0)
    expected = reference(qc, obs, xs, ws, inputs.detach().numpy(), fast.weight.detach().numpy())
    np.testing.assert_allclose(out_fast.detach().numpy(), expected, atol=1e-10)
    g_fast = torch.autograd.grad(out_fast.sum(), (inputs, fast.weight))
    g_slow = torch.autograd.grad(out_slow.sum(), (inputs, slow.weight))
    for a, b in zip(g_fast, g_slow, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("n", "distant"), [(1, False), (3, False), (6, False), (7, True)])
def test_real_random_circuits_match_statevector_with_gradients(n, distant):
    qc, xs, ws = random_circuit(n, 15 * n, seed=70 + n, distant=distant, real=True)
    # i·Y is not Hermitian: its real part is 0 on real states, and so must its gradient be
    obs = [*random_observables(n, seed=n), SparsePauliOp("I" * (n - 1) + "Y", coeffs=[1j])]
    qnn = TorchQNN(qc, obs, xs, ws).double()
    assert qnn.real
    inputs = torch.rand(3, n, dtype=torch.float64) * 4 - 2
    expected = reference(qc, obs, xs, ws, inputs.numpy(), qnn.weight.detach().numpy())
    np.testing.assert_allclose(qnn(inputs).detach().numpy(), expected, atol=1e-10)
    state = torch.randn(2, 2**n, dtype=torch.float64, requires_grad=True)
    some = inputs[:2].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, s, w: qnn(x, s), (some, state, qnn.weight))


def test_native_path_is_chosen_for_small_real_circuits_only(monkeypatch):
    monkeypatch.delenv("HQC_NATIVE", raising=False)
    monkeypatch.setattr(qnn_module, "NATIVE_MAX_WORK", 64 * 2**4 * 116)  # Q = 4: 116 gates
    qc, xs, ws = paper_circuit(4)
    qnn = TorchQNN(qc, SparsePauliOp("IIIZ"), xs, ws)
    cpu, real_state = torch.device("cpu"), torch.rand(64, 16)
    assert qnn._native.count == 116
    assert qnn._runs_native(64, None, cpu) and qnn._runs_native(64, real_state, cpu)
    assert not qnn._runs_native(65, None, cpu)  # past the work bound: fused
    assert not qnn._runs_native(8, real_state.to(torch.complex64)[:8], cpu)
    assert TorchQNN(qc, SparsePauliOp("IIIZ"), xs, ws, native=True)._runs_native(10**6, None, cpu)
    assert not TorchQNN(qc, SparsePauliOp("IIIZ"), xs, ws, native=False)._runs_native(1, None, cpu)
    assert TorchQNN(qc, SparsePauliOp("IIIY"), xs, ws, real=False)._native is None
    monkeypatch.setenv("HQC_NATIVE", "0")
    assert not qnn._runs_native(1, None, cpu)


def test_native_build_failure_warns_and_falls_back(monkeypatch, tmp_path):
    from hqc.quantum.torch_qnn import native

    qc, xs, ws = paper_circuit(3)
    qnn = TorchQNN(qc, SparsePauliOp("IIZ"), xs, ws).double()
    inputs = torch.rand(2, 3, dtype=torch.float64)
    expected = reference(qc, [SparsePauliOp("IIZ")], xs, ws, inputs.numpy(), qnn.weight.detach())
    monkeypatch.delenv("HQC_NATIVE", raising=False)
    monkeypatch.setenv("HQC_CACHE_DIR", str(tmp_path))  # nothing built there yet
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    native._build.cache_clear()
    try:
        with pytest.warns(UserWarning, match="native kernel not built"):
            assert native.library() is None
        assert not qnn._runs_native(2, None, torch.device("cpu"))
        np.testing.assert_allclose(qnn(inputs).detach().numpy(), expected, atol=1e-10)
        assert list(tmp_path.glob("native/*")) == []  # no torn library left behind
    finally:
        native._build.cache_clear()


def test_dtype_follows_module():
    qc, xs, ws = paper_circuit(5)
    qnn = TorchQNN(qc, SparsePauliOp("IIIIZ"), xs, ws)
    inputs = torch.rand(2, 5)
    assert qnn.weight.dtype == torch.float32
    assert qnn(inputs).dtype == torch.float32
    assert qnn(inputs, torch.randn(2, 32, dtype=torch.complex64)).dtype == torch.float32
    single = qnn(inputs).detach()
    qnn.double()
    out = qnn(inputs.double())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.float(), single, atol=1e-5, rtol=0)
    assert all(not b.is_complex() for b in qnn.buffers())


def test_initial_weights():
    qc, xs, ws = paper_circuit(4)
    obs = SparsePauliOp("IIIZ")
    default = TorchQNN(qc, obs, xs, ws)
    assert default.weight.shape == (len(ws),)
    assert default.weight.abs().max() <= 1.0 and default.weight.std() > 0.1
    given = torch.linspace(-2, 2, len(ws))
    assert torch.equal(TorchQNN(qc, obs, xs, ws, initial_weights=given).weight.data, given)
    with pytest.raises(ValueError, match=r"initial_weights must have shape \(40,\)"):
        TorchQNN(qc, obs, xs, ws, initial_weights=torch.zeros(3))


def test_matches_qiskit_machine_learning_estimator_qnn():
    from qiskit.primitives import StatevectorEstimator
    from qiskit_machine_learning.neural_networks import EstimatorQNN

    x, w = ParameterVector("x", 3), ParameterVector("w", 5)
    qc = QuantumCircuit(3)
    for i in range(3):
        qc.ry(x[i], i)
    qc.cx(0, 1)
    qc.rz(w[0], 1)
    qc.cx(1, 2)
    qc.rx(w[1], 2)
    qc.crz(w[2], 2, 0)
    qc.ry(w[3], 0)
    qc.rzz(w[4], 0, 2)
    obs = [SparsePauliOp("IIZ"), SparsePauliOp.from_list([("XYZ", 0.5), ("ZII", -1.0)])]
    estimator_qnn = EstimatorQNN(
        circuit=qc,
        estimator=StatevectorEstimator(),
        observables=obs,
        input_params=list(x),
        weight_params=list(w),
        input_gradients=True,
        default_precision=0.0,
    )
    qnn = TorchQNN(qc, obs, list(x), list(w)).double()
    inputs = torch.rand(4, 3, dtype=torch.float64, requires_grad=True)
    weights = qnn.weight.detach().numpy()
    expected = estimator_qnn.forward(inputs.detach().numpy(), weights)
    expected_in, expected_w = estimator_qnn.backward(inputs.detach().numpy(), weights)
    out = qnn(inputs)
    np.testing.assert_allclose(out.detach().numpy(), expected, atol=1e-10)
    for j in range(len(obs)):
        g_in, g_w = torch.autograd.grad(out[:, j].sum(), (inputs, qnn.weight), retain_graph=True)
        np.testing.assert_allclose(g_in.numpy(), expected_in[:, j], atol=1e-10)
        np.testing.assert_allclose(g_w.numpy(), expected_w[:, j].sum(0), atol=1e-10)


def test_circuit_without_gates_or_parameters():
    qc = QuantumCircuit(3)
    qnn = TorchQNN(qc, [SparsePauliOp("ZZZ"), SparsePauliOp("IXI")]).double()
    np.testing.assert_allclose(qnn(torch.zeros(2, 0)).detach().numpy(), [[1, 0], [1, 0]])
    qc.h(1)
    qnn = TorchQNN(qc, [SparsePauliOp("ZZZ"), SparsePauliOp("IXI")]).double()
    np.testing.assert_allclose(qnn(torch.zeros(1, 0)).detach().numpy(), [[0, 1]], atol=1e-12)


def test_opaque_gate_error_names_gate_and_index():
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    qc.append(Gate("foo", 1, []), [1])
    with pytest.raises(ValueError, match=r"'foo' at instruction 2"):
        TorchQNN(qc, SparsePauliOp("ZZ"))


def test_measure_and_reset_are_rejected():
    qc = QuantumCircuit(1, 1)
    qc.h(0)
    qc.measure(0, 0)
    with pytest.raises(ValueError, match=r"'measure' at instruction 1"):
        TorchQNN(qc, SparsePauliOp("Z"))
    qc = QuantumCircuit(1)
    qc.reset(0)
    with pytest.raises(ValueError, match=r"'reset' at instruction 0"):
        TorchQNN(qc, SparsePauliOp("Z"))


def test_unknown_parameter_error():
    x, w = ParameterVector("x", 1), ParameterVector("w", 2)
    qc = QuantumCircuit(1)
    qc.ry(x[0], 0)
    qc.rz(w[0] + w[1], 0)
    with pytest.raises(ValueError, match=r"w\[1\].*'rz' at instruction 1"):
        TorchQNN(qc, SparsePauliOp("Z"), [x[0]], [w[0]])


def test_observable_with_wrong_qubit_count():
    qc = QuantumCircuit(2)
    with pytest.raises(ValueError, match="observable 1 acts on 3 qubits, the circuit has 2"):
        TorchQNN(qc, [SparsePauliOp("ZZ"), SparsePauliOp("ZZZ")])


def test_wrong_input_width():
    qc, xs, ws = paper_circuit(3)
    qnn = TorchQNN(qc, SparsePauliOp("ZII"), xs, ws)
    with pytest.raises(ValueError, match=r"shape \(batch, 3\), got \(2, 4\)"):
        qnn(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"initial_state must have shape \(2, 8\), got \(2, 4\)"):
        qnn(torch.zeros(2, 3), torch.zeros(2, 4))


def test_real_true_on_complex_circuit():
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.s(1)
    with pytest.raises(ValueError, match=r"real=True.*'s' at instruction 1"):
        TorchQNN(qc, SparsePauliOp("ZZ"), real=True)
    qc, xs, ws = paper_circuit(3)
    assert TorchQNN(qc, SparsePauliOp("ZZZ"), xs, ws, real=True).real


def test_circuit_is_compiled_once():
    qc, xs, ws = paper_circuit(5)
    qnn = TorchQNN(qc, SparsePauliOp("IIIIZ"), xs, ws).double()
    inputs = torch.rand(3, 5, dtype=torch.float64)
    before = qnn(inputs)
    qc.x(0)  # later edits of the circuit must not reach the compiled module
    qc.data.clear()
    torch.testing.assert_close(qnn(inputs), before, atol=0, rtol=0)


def test_affine_angles_form_one_coefficient_matrix():
    x, w = ParameterVector("x", 1), ParameterVector("w", 1)
    qc = QuantumCircuit(2)
    qc.cx(0, 1)
    qc.rx(3 * x[0] + 2 * w[0] - 1, 0)
    qc.cp(w[0], 0, 1)  # a phase gate: its angle enters the matrix unhalved
    qnn = TorchQNN(qc, SparsePauliOp("ZZ"), list(x), list(w))
    # half-angle coefficients over [x0, w0] per slot, plus constants
    np.testing.assert_allclose(qnn._angle_a.numpy(), [[1.5, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(qnn._angle_b.numpy(), [-0.5, 0.0])


def test_reused_memory_never_corrupts_gradients():
    qc, xs, ws = paper_circuit(6)
    qnn = TorchQNN(qc, SparsePauliOp("IIIIIZ"), xs, ws, native=False).double()
    x1, x2 = torch.rand(2, 6, dtype=torch.float64), torch.rand(3, 6, dtype=torch.float64)
    expected = [torch.autograd.grad(qnn(x).sum(), qnn.weight)[0] for x in (x1, x2)]
    # two graphs alive at once: the second forward must not reuse the first one's memory
    out1, out2 = qnn(x1), qnn(x2)
    torch.testing.assert_close(
        torch.autograd.grad(out1.sum() + out2.sum(), qnn.weight)[0], expected[0] + expected[1]
    )
    # a retained graph whose memory a later forward reused fails loudly instead
    out1 = qnn(x1)
    torch.autograd.grad(out1.sum(), qnn.weight, retain_graph=True)
    qnn(x2).sum().backward()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(out1.sum(), qnn.weight)


def test_copy_and_pickle_after_training_step():
    import copy
    import pickle

    qc, xs, ws = paper_circuit(5)
    qnn = TorchQNN(qc, SparsePauliOp("IIIIZ"), xs, ws)
    inputs = torch.rand(4, 5)
    qnn(inputs).sum().backward()  # leaves reusable memory behind
    expected = qnn(inputs).detach()
    clones = [copy.deepcopy(qnn), pickle.loads(pickle.dumps(qnn))]
    del qnn  # a clone must own everything it runs on (the native kernel's gate arrays too)
    gc.collect()
    for clone in clones:
        torch.testing.assert_close(clone(inputs), expected)


@pytest.mark.parametrize("distant", [False, True])
def test_empty_batch(distant):
    """A batch of 0 (e.g. an empty last batch) gives 0 rows and a zero weight gradient."""
    qc, xs, ws = random_circuit(8, 40, seed=3, distant=distant)
    obs = random_observables(8, seed=3)
    qnn = TorchQNN(qc, obs, xs, ws)
    inputs = torch.zeros(0, 8, requires_grad=True)
    out = qnn(inputs)
    assert out.shape == (0, len(obs))
    out.sum().backward()
    assert inputs.grad.shape == (0, 8)
    torch.testing.assert_close(qnn.weight.grad, torch.zeros_like(qnn.weight))
    state = torch.zeros(0, 2**8, dtype=torch.complex64)
    assert qnn(inputs, initial_state=state).shape == (0, len(obs))


def weighted_grads(qnn, inputs, state=None):
    """Gradients of a weighted sum of the outputs: weights, inputs (and the initial state)."""
    x = inputs.clone().requires_grad_()
    s = None if state is None else state.clone().requires_grad_()
    out = qnn(x, s)
    loss = (out * torch.linspace(0.5, 1.5, out.shape[1], dtype=out.dtype)).sum()
    return torch.autograd.grad(loss, [qnn.weight, x] + ([] if s is None else [s]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("every", [None, 3])
@pytest.mark.parametrize(
    "circuit",
    [
        lambda: random_circuit(7, 90, seed=1),
        lambda: random_circuit(8, 60, seed=2, distant=True),
        every_gate_circuit,
        lambda: paper_circuit(9),
    ],
    ids=["random", "distant", "every-gate", "paper"],
)
def test_adjoint_backward_equals_saved_states(circuit, every, dtype):
    qc, xs, ws = circuit()
    obs = random_observables(qc.num_qubits, seed=0)
    saved = TorchQNN(qc, obs, xs, ws, backward="saved", native=False).to(dtype)
    adjoint = TorchQNN(
        qc,
        obs,
        xs,
        ws,
        saved.weight.detach(),
        backward="adjoint",
        checkpoint_every=every,
        native=False,
    ).to(dtype)
    inputs = torch.rand(5, len(xs), dtype=dtype, generator=torch.Generator().manual_seed(0)) * 2
    expected = weighted_grads(saved, inputs)
    got = weighted_grads(adjoint, inputs)
    assert adjoint._memory is None and saved._memory is not None  # the chosen paths ran
    tol = {"atol": 1e-12, "rtol": 0} if dtype == torch.float64 else {"atol": 1e-6, "rtol": 1e-5}
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, **tol)


@pytest.mark.parametrize("complex_state", [False, True])
def test_adjoint_backward_gradcheck_with_initial_state(complex_state):
    qc, xs, ws = random_circuit(5, 50, seed=4, distant=True)
    qnn = TorchQNN(qc, random_observables(5, seed=5), xs, ws, backward="adjoint").double()
    dtype = torch.complex128 if complex_state else torch.float64
    state = torch.randn(2, 32, dtype=dtype, requires_grad=True)
    inputs = torch.rand(2, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, s, w: qnn(x, s), (inputs, state, qnn.weight))


def test_auto_backward_switches_to_adjoint_past_the_memory_bound(monkeypatch):
    qc, xs, ws = paper_circuit(6)
    qnn = TorchQNN(qc, SparsePauliOp("IIIIIZ"), xs, ws, native=False).double()
    inputs = torch.rand(4, 6, dtype=torch.float64)
    expected = weighted_grads(qnn, inputs)
    assert qnn._memory is not None  # small: block inputs saved
    monkeypatch.setattr(qnn_module, "SAVED_STATES_MAX_BYTES", qnn._memory.numel() * 8 - 1)
    qnn._memory = None
    got = weighted_grads(qnn, inputs)
    assert qnn._memory is None  # one byte too many: adjoint
    for e, g in zip(expected, got, strict=True):
        torch.testing.assert_close(g, e, atol=1e-12, rtol=0)


def test_backward_settings_are_checked():
    qc, xs, ws = paper_circuit(3)
    with pytest.raises(ValueError, match="backward must be"):
        TorchQNN(qc, SparsePauliOp("IIZ"), xs, ws, backward="reverse")
    with pytest.raises(ValueError, match="checkpoint_every"):
        TorchQNN(qc, SparsePauliOp("IIZ"), xs, ws, checkpoint_every=0)
    with pytest.raises(ValueError, match="fuse_qubits"):
        TorchQNN(qc, SparsePauliOp("IIZ"), xs, ws, fuse_qubits=0)


@pytest.mark.parametrize("width", [1, 2, 3])
@pytest.mark.parametrize(
    "circuit",
    [lambda: random_circuit(7, 90, seed=1, distant=True), every_gate_circuit],
    ids=["distant", "every-gate"],
)
def test_fusion_width_changes_blocks_not_values(circuit, width):
    """Any fusion window gives the default's outputs and gradients (float64, 1e-12)."""
    qc, xs, ws = circuit()
    obs = random_observables(qc.num_qubits, seed=0)
    default = TorchQNN(qc, obs, xs, ws).double()
    other = TorchQNN(
        qc, obs, xs, ws, default.weight.detach(), fuse_qubits=width, native=False
    ).double()
    widths = [{s[2] for s in q._steps if s[0] == "low"} for q in (default, other)]
    assert widths[1] != widths[0] and max(widths[1]) <= width  # a different compilation ran
    inputs = torch.rand(4, len(xs), dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(other(inputs), default(inputs), atol=1e-12, rtol=0)
    for e, g in zip(weighted_grads(default, inputs), weighted_grads(other, inputs), strict=True):
        torch.testing.assert_close(g, e, atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("backward", "every"), [("saved", None), ("adjoint", None), ("adjoint", 2)]
)
@pytest.mark.parametrize(
    "circuit",
    [
        lambda: random_circuit(7, 90, seed=1),
        lambda: random_circuit(8, 60, seed=2, distant=True),
        every_gate_circuit,
        non_affine_circuit,
        lambda: paper_circuit(6),
    ],
    ids=["random", "distant", "every-gate", "non-affine", "paper"],
)
def test_per_sample_jacobians_equal_autograd_sample_by_sample(circuit, backward, every):
    qc, xs, ws = circuit()
    obs = random_observables(qc.num_qubits, seed=0)
    qnn = TorchQNN(qc, obs, xs, ws, backward=backward, checkpoint_every=every).double()
    inputs = torch.rand(4, len(xs), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out, jac = jacobians(qnn, inputs * 3)
    assert jac.shape == (4, len(obs), len(xs) + len(ws))
    torch.testing.assert_close(out, qnn(inputs * 3).detach(), atol=1e-13, rtol=0)
    for b, row in enumerate(inputs * 3):
        expected = torch.autograd.functional.jacobian(
            lambda x, w: torch.func.functional_call(qnn, {"weight": w}, (x[None],))[0],
            (row, qnn.weight.detach()),
        )
        torch.testing.assert_close(jac[b], torch.cat(expected, 1), atol=1e-12, rtol=0)
    assert jac[..., len(xs) :].abs().amax() > 1e-3  # weights matter: not a vacuous comparison


def test_per_sample_jacobians_of_an_empty_batch():
    qc, xs, ws = random_circuit(4, 30, seed=3)
    qnn = TorchQNN(qc, random_observables(4, seed=1), xs, ws).double()
    out, jac = jacobians(qnn, torch.empty(0, len(xs), dtype=torch.float64))
    assert out.shape == (0, 3) and jac.shape == (0, 3, len(xs) + len(ws))


def test_native_frame_order_moves_each_bit_by_the_frame():
    assert GateTable([], 0, 0).frame_order().tolist() == [0]  # no qubits: one amplitude
    order = GateTable([], 3, 1).frame_order().tolist()
    assert order == [sum(((i >> p) & 1) << ((p + 1) % 3) for p in range(3)) for i in range(8)]
    assert sorted(order) == list(range(8)) and order != list(range(8))
