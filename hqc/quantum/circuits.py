"""Qiskit circuit builders: the kit's common language for encodings, ansatzes and observables.

Every builder returns a :class:`~qiskit.QuantumCircuit` whose free parameters live in
:class:`~qiskit.circuit.ParameterVector` s, so the same circuit can be run by the torch
simulator (:class:`~hqc.quantum.torch_qnn.TorchQNN`), by Qiskit primitives, or drawn.
Qubit ``i`` is Qiskit's qubit ``i`` (little-endian: it is the rightmost letter of a Pauli label
and bit ``i`` of a basis-state index).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter, ParameterVector
from qiskit.circuit.library import efficient_su2
from qiskit.exceptions import QiskitError
from qiskit.quantum_info import SparsePauliOp

from hqc.errors import UserError

ENCODING_GATES = ("ry", "rx", "rz")
ANSATZES = ("long_range", "nearest_neighbour", "efficient_su2")


def _check_at_least(setting: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise UserError(f"{setting} must be >= {minimum}, got {value}")


def _check_choice(setting: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise UserError(f"{setting} must be one of {list(choices)}, got {value!r}")


def angle_encoding(
    num_qubits: int, gate: str = "ry", scale: float = 1.0, prefix: str = "x"
) -> tuple[QuantumCircuit, ParameterVector]:
    """One rotation ``gate(scale · x_i)`` on each qubit ``i``: the paper's R_Y(x_i) encoding.

    Args:
        num_qubits: number of qubits (= number of inputs).
        gate: ``ry`` (the paper's), ``rx`` or ``rz``.
        scale: angle per unit input; 1 when an upstream stage already produces angles.
        prefix: name of the input parameter vector.
    """
    circuit = QuantumCircuit(_qubits(num_qubits))
    inputs = ParameterVector(prefix, num_qubits)
    _append_encoding(circuit, inputs, gate, scale)
    return circuit, inputs


def _qubits(num_qubits: int) -> int:
    _check_at_least("num_qubits", num_qubits, 1)
    return num_qubits


def _append_encoding(
    circuit: QuantumCircuit, inputs: Sequence[Parameter], gate: str, scale: float
) -> None:
    _check_choice("encoding gate", gate, ENCODING_GATES)
    rotate = getattr(circuit, gate)
    for qubit, x in enumerate(inputs):
        rotate(x if scale == 1.0 else scale * x, qubit)


def num_ansatz_parameters(name: str, num_qubits: int, layers: int, connectivity: int = 2) -> int:
    """Number of weights of an ansatz; validates every setting it depends on.

    ``long_range``: ``layers·Q·C + Q`` (28 for Q=4, C=2, M=3, the paper's Fig. 3);
    ``nearest_neighbour``: ``layers·(Q-1) + Q``; ``efficient_su2``: ``2·Q·(layers+1)``.
    ``connectivity`` only matters for ``long_range``.
    """
    _check_choice("ansatz", name, ANSATZES)
    _qubits(num_qubits)
    _check_at_least("layers", layers, 0)
    if name == "long_range":
        _check_at_least("connectivity", connectivity, 1)
        if connectivity >= num_qubits:
            raise UserError(
                f"connectivity must be < num_qubits ({num_qubits}) for the long_range ansatz "
                f"(offset d = num_qubits would make CX act on one qubit), got {connectivity}"
            )
        return layers * num_qubits * connectivity + num_qubits
    if name == "nearest_neighbour":
        return layers * (num_qubits - 1) + num_qubits
    return 2 * num_qubits * (layers + 1)


def _append_ansatz(
    circuit: QuantumCircuit,
    weights: Sequence[Parameter],
    name: str,
    layers: int,
    connectivity: int,
) -> None:
    """Append ansatz ``name`` on all of ``circuit``'s qubits, consuming ``weights`` in order."""
    q = circuit.num_qubits
    if name == "efficient_su2":
        circuit.compose(
            efficient_su2(q, reps=layers, entanglement="linear").assign_parameters(weights),
            inplace=True,
        )
        return
    offsets = range(1, connectivity + 1) if name == "long_range" else (1,)
    pairs = [
        (i, (i + d) % q)
        for _ in range(layers)
        for d in offsets
        for i in range(q)
        if name == "long_range" or i + d < q
    ]
    weight = iter(weights)
    for control, target in pairs:
        circuit.cx(control, target)
        circuit.ry(next(weight), target)
    for qubit in range(q):
        circuit.ry(next(weight), qubit)


def ansatz(
    name: str, num_qubits: int, layers: int, connectivity: int = 2, prefix: str = "θ"
) -> tuple[QuantumCircuit, ParameterVector]:
    """A trainable PQC.

    ``long_range`` (the paper's): each of ``layers`` layers applies, for each offset
    d = 1..connectivity and every qubit i, CX(i → (i+d) mod Q) then R_Y(θ) on (i+d) mod Q;
    a final R_Y column follows. ``nearest_neighbour``: the same with d = 1 and no wrap-around
    (CX(i → i+1), i < Q-1). ``efficient_su2``: Qiskit's hardware-efficient RY+RZ columns with a
    linear CX ladder, ``layers`` repetitions, for ablations. Only CX/R_Y appear in the first two,
    so their amplitudes stay real.
    """
    circuit = QuantumCircuit(_qubits(num_qubits))
    weights = ParameterVector(prefix, num_ansatz_parameters(name, num_qubits, layers, connectivity))
    _append_ansatz(circuit, weights, name, layers, connectivity)
    return circuit, weights


def reupload_circuit(
    num_qubits: int,
    reuploads: int = 2,
    layers: int = 2,
    connectivity: int = 2,
    ansatz: str = "long_range",
    shared: bool = False,
    encoding: str = "ry",
    scale: float = 1.0,
) -> tuple[QuantumCircuit, ParameterVector, ParameterVector]:
    """The paper's second module: ``reuploads`` × [angle encoding → PQC 1], then PQC 2.

    PQC 1 and PQC 2 are both ``ansatz`` with ``layers`` layers. ``shared=False`` (default) gives
    each re-upload block its own PQC 1 weights: strictly more expressive than sharing, and the
    MerLin reproduction found separate weights better; the paper's figure labels the blocks
    alike, so ``shared=True`` reproduces that reading.

    Returns:
        The circuit, its input vector ``x`` (one angle per qubit, re-uploaded in every block)
        and its weight vector ``θ`` ordered [PQC 1 of block 1, (block 2, ...), PQC 2].
    """
    _check_at_least("reuploads", reuploads, 1)
    per_pqc = num_ansatz_parameters(ansatz, num_qubits, layers, connectivity)
    circuit = QuantumCircuit(num_qubits)
    inputs = ParameterVector("x", num_qubits)
    weights = ParameterVector("θ", per_pqc * ((1 if shared else reuploads) + 1))
    for block in range(reuploads):
        start = 0 if shared else block * per_pqc
        _append_encoding(circuit, inputs, encoding, scale)
        _append_ansatz(circuit, weights[start : start + per_pqc], ansatz, layers, connectivity)
    _append_ansatz(circuit, weights[-per_pqc:], ansatz, layers, connectivity)
    return circuit, inputs, weights


def amplitude_qubits(num_features: int) -> int:
    """Smallest Q with 2^Q >= ``num_features`` (at least 1)."""
    _check_at_least("num_features", num_features, 1)
    return max(1, math.ceil(math.log2(num_features)))


def check_amplitude_fit(num_features: int, num_qubits: int, truncate: bool) -> None:
    """Raise unless ``num_features`` fit 2^Q amplitudes or ``truncate`` allows dropping some."""
    if num_features > 2 ** _qubits(num_qubits) and not truncate:
        raise UserError(
            f"{num_features} features do not fit the 2^{num_qubits} = {2**num_qubits} "
            f"amplitudes of {num_qubits} qubits: use more qubits or set truncate=True"
        )


def amplitude_encode(x: torch.Tensor, num_qubits: int, truncate: bool = False) -> torch.Tensor:
    """Amplitudes of a Q-qubit state per row: L2-normalised, zero-padded to 2^Q.

    Args:
        x: embeddings ``(B, d)``.
        num_qubits: Q.
        truncate: when d > 2^Q, keep the first 2^Q features (then normalise) instead of raising.

    Raises:
        ValueError: d > 2^Q without ``truncate``, or a row that is all zeros (no state).
    """
    check_amplitude_fit(x.shape[-1], num_qubits, truncate)
    dim = 2**num_qubits
    x = x[..., :dim]
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError("cannot amplitude-encode an all-zero embedding (no quantum state)")
    return torch.nn.functional.pad(x / norm, (0, dim - x.shape[-1]))


@cache
def _gray_walsh(controls: int) -> torch.Tensor:
    """``H[i, j] = (-1)^popcount(j & gray(i)) / 2^k``: uniformly-controlled angles → gate angles."""
    n = 2**controls
    rows = [[(-1) ** ((j & (i ^ (i >> 1))).bit_count()) / n for j in range(n)] for i in range(n)]
    return torch.tensor(rows, dtype=torch.float64)


def _cnot_control(step: int, controls: int) -> int:
    """Which control bit flips between Gray codes ``step`` and ``step+1`` (cyclically)."""
    n = 2**controls
    changed = (step ^ (step >> 1)) ^ (((step + 1) % n) ^ (((step + 1) % n) >> 1))
    return changed.bit_length() - 1


def amplitude_loader(num_qubits: int) -> tuple[QuantumCircuit, ParameterVector]:
    """A circuit of R_Y and CX only that prepares any real state from |0…0⟩.

    Used where a simulator cannot take an initial state (the Qiskit backend). Unlike
    qiskit-machine-learning's ``raw_feature_vector``, it keeps weight gradients working: the
    parameter-shift gradient must unroll every gate, and ``ParameterizedInitialize`` cannot be
    unrolled while unbound (qiskit-machine-learning issue #669). It is a binary tree of
    uniformly-controlled R_Y (Möttönen et al. 2004): qubit Q-1 first, then each lower qubit
    controlled by those above, as CX/R_Y Gray-code sequences. Its ``2^Q - 1`` input angles
    come from :func:`amplitude_loader_angles`.
    """
    circuit = QuantumCircuit(_qubits(num_qubits))
    angles = ParameterVector("amplitude_angle", 2**num_qubits - 1)
    angle = iter(angles)
    for target in reversed(range(num_qubits)):
        controls = num_qubits - 1 - target
        for step in range(2**controls):
            circuit.ry(next(angle), target)
            if controls:
                circuit.cx(target + 1 + _cnot_control(step, controls), target)
    return circuit, angles


def _safe_norm(x: torch.Tensor) -> torch.Tensor:
    """Norm over the last axis with gradient 0 (not NaN) at 0, where zero padding puts it."""
    squared = x.square().sum(-1)
    positive = squared > 0
    return torch.where(positive, torch.where(positive, squared, 1.0).sqrt(), 0.0)


def amplitude_loader_angles(states: torch.Tensor) -> torch.Tensor:
    """Input angles ``(B, 2^Q - 1)`` for :func:`amplitude_loader` to prepare real ``states``.

    Differentiable (gradients are 0, not NaN, on all-zero sub-blocks such as padding). Rows
    need not be normalised: the prepared state is ``states / ‖states‖``.

    Raises:
        ValueError: complex states, or a width that is not a power of two.
    """
    if states.is_complex():
        raise ValueError("amplitude_loader prepares real states only; got a complex tensor")
    num_qubits = states.shape[-1].bit_length() - 1
    if states.shape[-1] != 2**num_qubits or num_qubits < 1:
        raise ValueError(f"state width must be 2^Q with Q >= 1, got {states.shape[-1]}")
    out = []
    for target in reversed(range(num_qubits)):
        controls = num_qubits - 1 - target
        blocks = states.reshape(*states.shape[:-1], 2**controls, 2, 2**target)
        halves = _safe_norm(blocks) if target else blocks[..., 0]
        zero = (halves[..., 0] == 0) & (halves[..., 1] == 0)
        rotation = 2 * torch.atan2(
            torch.where(zero, 0.0, halves[..., 1]), torch.where(zero, 1.0, halves[..., 0])
        )
        out.append(rotation @ _gray_walsh(controls).to(rotation).T)
    return torch.cat(out, dim=-1)


def z_observables(num_qubits: int, qubits: Sequence[int] = (0,)) -> list[SparsePauliOp]:
    """Pauli-Z on each of ``qubits`` (default qubit 0, the paper's Q_m = 1), in that order."""
    _qubits(num_qubits)
    if not qubits:
        raise UserError("measured qubits must name at least one qubit")
    missing = [q for q in qubits if not 0 <= q < num_qubits]
    if missing:
        raise UserError(f"measured qubits {missing} do not exist on {num_qubits} qubits")
    return [SparsePauliOp.from_sparse_list([("Z", [q], 1.0)], num_qubits) for q in qubits]


def pauli_observables(
    num_qubits: int, observables: Sequence[str | SparsePauliOp]
) -> list[SparsePauliOp]:
    """User observables as ``SparsePauliOp`` s, checked to act on ``num_qubits`` qubits.

    Strings are full Pauli labels in Qiskit order: ``"IIIZ"`` is Z on qubit 0 of 4.
    """
    _qubits(num_qubits)
    if not observables:
        raise UserError("observables must contain at least one observable")
    try:
        ops = [SparsePauliOp(o) if isinstance(o, str) else o for o in observables]
    except QiskitError as error:
        raise UserError(f"observables must be Pauli labels such as 'IIZ': {error}") from error
    wrong = [str(o.paulis[0]) for o in ops if o.num_qubits != num_qubits]
    if wrong:
        raise UserError(f"observables {wrong} do not act on exactly {num_qubits} qubits")
    return ops
