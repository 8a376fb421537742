"""Batched torch statevector execution of Qiskit circuits, as a drop-in for TorchConnector.

``TorchConnector(EstimatorQNN(...))`` runs estimator jobs per sample and differentiates by
parameter shift, about three orders of magnitude too slow to train on. :class:`TorchQNN` compiles
the circuit once into a short list of large batched tensor operations; per-op dispatch overhead
dominates small circuits and memory traffic large ones, so the aim is few, large kernels.

Compilation (construction time):

* The circuit is flattened into 1- and 2-qubit gates; other instructions are expanded through
  their ``definition``. A rotation is written as ``A0 + cos(φ) Ac + sin(φ) As`` with constant
  matrices and ``φ`` affine in the inputs and weights, so every angle of a forward pass comes from
  one matmul ``[inputs, weights] @ A + b``.
* Each qubit's leading 1-qubit gates (e.g. a first encoding layer) act on ``|0...0>`` as a
  product state, built with a few outer products instead of gate applications.
* The other gates are fused greedily into blocks on windows of four cyclically adjacent qubits
  (16x16 is the smallest matrix a CPU GEMM handles efficiently). A block matrix is
  ``S_after @ L @ S_before``: ``S`` are products of weight-only gates (fixed gates such as CX
  folded into the rotations), built for all blocks at once by a log-depth batched product, and
  ``L`` is a per-sample Kronecker product of the block's input-dependent 1-qubit gates (identity
  for weight-only blocks). Input-dependent 2-qubit rotations are expanded into 1-qubit rotations
  and CX through their definitions. 2-qubit gates on qubits too far apart for a window get their
  own (slower) block.
* The state is a ``(batch, 2**Q)`` tensor; before a block its qubit order is cyclically rotated
  so that the window sits on the lowest bits, where the block is one ``(B * 2**(Q-4), 16) @ 16x16``
  GEMM. The observables are permuted to the final qubit order ahead of time. The evolution has a
  hand-written backward (adjoint GEMMs, inverse rotations) instead of per-op autograd nodes.
* When every gate matrix is real (CX, RY, H, CZ, ...), the simulation runs in real arithmetic.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Gate, Parameter, ParameterExpression
from qiskit.circuit.exceptions import CircuitError
from qiskit.circuit.library import RYGate, RZGate
from qiskit.quantum_info import SparsePauliOp
from torch import nn

_ROTATIONS = frozenset({"rx", "ry", "rz", "p", "crx", "cry", "crz", "cp", "rxx", "ryy", "rzz"})
_IGNORED = frozenset({"barrier", "delay"})
_FUSE_QUBITS = 4
_MAX_FACTORS = 16  # rotations per block: bounds the identity padding of the factor product
# Relative forward+backward cost of applying a window block at the low bits (one GEMM), a
# distant qubit pair (bits moved together, slow when the lower one is below bit 4), and a cyclic
# rotation of the qubit order (measured at 14 qubits, batch 64); used to schedule the rotations.
_COST = {"low": 1.0, "split": 4.0, "split_narrow": 9.0, "rotate": 0.5}

AngleFn = Callable[[torch.Tensor], torch.Tensor]


class _Lease:
    """Marks the reusable evolution memory as in use until its backward has run."""

    released = False


@dataclass
class _Gate:
    """A flattened gate: a fixed matrix ``(F,)``, or a rotation ``(A0, Ac, As)`` at ``slot``."""

    qubits: tuple[int, ...]
    mats: tuple[np.ndarray, ...]
    label: str
    slot: int | None = None
    per_sample: bool = False


@dataclass
class _Block:
    """Gates fused onto ``window`` (cyclically adjacent qubits, or a distant pair if ``split``).

    The block applies ``after @ kron(layer) @ before``; ``layer`` maps a qubit to its
    input-dependent 1-qubit gates.
    """

    window: tuple[int, ...]
    split: bool
    before: list[int] = field(default_factory=list)
    after: list[int] = field(default_factory=list)
    layer: dict[int, list[int]] = field(default_factory=dict)

    @property
    def gates(self) -> list[int]:
        """Indices of all gates in the block."""
        return self.before + self.after + [i for g in self.layer.values() for i in g]

    def local_qubits(self, frame: int, n: int) -> tuple[int, ...]:
        """Window qubits in ascending physical position under rotation ``frame``."""
        return tuple(sorted(self.window, key=lambda q: (q - frame) % n))


@dataclass
class _Angles:
    """Angle slots ``φ = rows @ [inputs, weights] + consts`` (+ non-affine values)."""

    variables: dict[Parameter, int]
    n_inputs: int
    rows: list[np.ndarray] = field(default_factory=list)
    consts: list[float] = field(default_factory=list)
    nonaffine: list[tuple[int, AngleFn]] = field(default_factory=list)

    def depends_on_inputs(self, expr: ParameterExpression | float) -> bool:
        """Whether ``expr`` involves an input parameter (so its gate is per-sample)."""
        params = expr.parameters if isinstance(expr, ParameterExpression) else ()
        return any(self.variables.get(p, self.n_inputs) < self.n_inputs for p in params)

    def add(self, expr: ParameterExpression | float, factor: float, label: str) -> int:
        """Register ``factor * expr`` as a new slot and return its index."""
        row = np.zeros(len(self.variables))
        slot = len(self.rows)
        params = expr.parameters if isinstance(expr, ParameterExpression) else set()
        unknown = sorted(p.name for p in params if p not in self.variables)
        if unknown:
            raise ValueError(
                f"parameter(s) {unknown} of {label} are in neither input_params nor weight_params"
            )
        const = 0.0
        try:
            for p in params:
                row[self.variables[p]] = factor * float(expr.gradient(p))
            const = factor * float(expr.bind(dict.fromkeys(params, 0.0)) if params else expr)
        except TypeError:  # a gradient still depends on parameters: not affine
            row[:] = 0.0
            self.nonaffine.append((slot, _lambdify(expr, self.variables, factor)))
        self.rows.append(row)
        self.consts.append(const)
        return slot


def _lambdify(expr: ParameterExpression, variables: dict[Parameter, int], factor: float) -> AngleFn:
    """Torch function of the ``[inputs, weights]`` matrix evaluating a non-affine angle."""
    params = sorted(expr.parameters, key=lambda p: p.name)
    fn = sympy.lambdify([sympy.Symbol(p.name) for p in params], expr.sympify(), modules="torch")
    columns = [variables[p] for p in params]
    return lambda v: factor * fn(*(v[:, c] for c in columns))


class TorchQNN(nn.Module):
    """Expectation values of ``observables`` after ``circuit``, differentiable by autograd.

    ``forward(inputs, initial_state=None)`` maps ``inputs`` ``(B, len(input_params))`` to
    ``(B, len(observables))``. Outputs and gradients follow the module's dtype (``.double()``
    switches to float64/complex128) and device.

    Args:
        circuit: Any unitary Qiskit circuit; measure, reset and opaque gates raise ``ValueError``.
        observables: One ``SparsePauliOp`` or a sequence of them on ``circuit.num_qubits``.
        input_params: Circuit parameters fed from the columns of ``inputs``, in order.
        weight_params: Circuit parameters bound to ``self.weight``, in order.
        initial_weights: Initial ``weight``; uniform in [-1, 1] when omitted, as TorchConnector.
        real: ``None`` simulates in real arithmetic when every gate is real; ``False`` forces
            complex arithmetic; ``True`` requires a real circuit.

    Gate angles that are non-affine in the parameters (e.g. ``(π - x)(π - y)`` in
    ``ZZFeatureMap``) work through a slower path: sympy turns them into a torch function evaluated
    each forward. Expectations are bilinear in the state, so an ``initial_state`` is used exactly as
    given (not normalised).
    """

    def __init__(
        self,
        circuit: QuantumCircuit,
        observables: SparsePauliOp | Sequence[SparsePauliOp],
        input_params: Sequence[Parameter] = (),
        weight_params: Sequence[Parameter] = (),
        initial_weights: torch.Tensor | None = None,
        real: bool | None = None,
    ) -> None:
        super().__init__()
        n = circuit.num_qubits
        variables = [*input_params, *weight_params]
        if len(set(variables)) != len(variables):
            raise ValueError("input_params and weight_params must be distinct parameters")
        self.num_qubits, self.num_inputs = n, len(input_params)
        angles = _Angles({p: i for i, p in enumerate(variables)}, len(input_params))
        gates = _flatten(circuit, angles)
        complex_gate = next((g for g in gates if any(np.any(m.imag) for m in g.mats)), None)
        if real and complex_gate is not None:
            raise ValueError(f"real=True but the circuit has a complex gate: {complex_gate.label}")
        self.real = complex_gate is None if real is None else real

        self.weight = nn.Parameter(torch.empty(len(weight_params)))
        if initial_weights is None:
            nn.init.uniform_(self.weight, -1.0, 1.0)
        else:
            init = torch.as_tensor(initial_weights, dtype=torch.float32)
            if init.shape != self.weight.shape:
                raise ValueError(
                    f"initial_weights must have shape {tuple(self.weight.shape)}, "
                    f"got {tuple(init.shape)}"
                )
            self.weight.data.copy_(init)

        if not angles.rows:  # parameter-free blocks still index one (unused) slot
            angles.add(0.0, 1.0, "")
        self.register_buffer("_angle_a", torch.tensor(np.array(angles.rows).T, dtype=torch.float64))
        self.register_buffer("_angle_b", torch.tensor(angles.consts, dtype=torch.float64))
        self.register_buffer(
            "_nonaffine_slots", torch.tensor([s for s, _ in angles.nonaffine], dtype=torch.long)
        )
        self._nonaffine = [f for _, f in angles.nonaffine]

        prefix, gates = _split_prefix(gates, n)
        width = min(_FUSE_QUBITS, n)
        blocks = _fuse(gates, n, width)
        plan = _schedule(blocks, n)
        self._steps, self._refs, members = _compile_ops(blocks, plan, n)
        self.groups = nn.ModuleList(
            _BlockGroup(gates, [(blocks[b], plan[b][0]) for b in bs], n) for bs in members
        )
        frame = plan[0][0] if plan else 0
        self.prefix = _Prefix(prefix, [(p + frame) % n for p in range(n)])
        self._memory: torch.Tensor | None = None
        self._lease: weakref.ref[_Lease] | None = None
        self._compile_observables(observables, plan[-1][0] if plan else 0)

    def _compile_observables(
        self, observables: SparsePauliOp | Sequence[SparsePauliOp], frame: int
    ) -> None:
        """Split each observable into a real diagonal and bit-flip terms, in the final qubit order.

        A Pauli string maps ``|x>`` to ``phase(x) |x ^ mask>``; terms are grouped by ``mask``.
        """
        obs = [observables] if isinstance(observables, SparsePauliOp) else list(observables)
        n = self.num_qubits
        for j, o in enumerate(obs):
            if o.num_qubits != n:
                raise ValueError(
                    f"observable {j} acts on {o.num_qubits} qubits, the circuit has {n}"
                )
        self.num_outputs = len(obs)
        diag = np.zeros((2**n, len(obs)))
        flips: dict[int, np.ndarray] = {}
        for j, o in enumerate(obs):
            for pauli, coeff in zip(o.paulis, o.coeffs, strict=True):
                phase, mask = np.ones(1, dtype=complex), 0
                for p in range(n):  # physical bit p holds logical qubit (p + frame) % n
                    q = (p + frame) % n
                    x, z = bool(pauli.x[q]), bool(pauli.z[q])
                    factor = (np.array([1, -1]) if z else np.ones(2)) * (1j if x and z else 1)
                    phase, mask = np.kron(factor, phase), mask | int(x) << p
                term = coeff * (-1j) ** pauli.phase * phase
                if mask:
                    flips.setdefault(mask, np.zeros((2**n, len(obs)), dtype=complex))[:, j] += term
                else:
                    diag[:, j] += term.real
        masks = sorted(flips)
        flip = np.array([flips[m] for m in masks]).reshape(len(masks), 2**n, len(obs))
        index = np.array([np.arange(2**n) ^ m for m in masks]).reshape(len(masks), 2**n)
        self.register_buffer("_diag", torch.tensor(diag, dtype=torch.float64))
        self.register_buffer("_flip_index", torch.tensor(index, dtype=torch.long))
        self.register_buffer("_flip_re", torch.tensor(flip.real, dtype=torch.float64))
        self.register_buffer("_flip_im", torch.tensor(flip.imag, dtype=torch.float64))

    def forward(
        self, inputs: torch.Tensor, initial_state: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Expectations ``(B, num_outputs)`` for ``inputs`` ``(B, num_inputs)``.

        ``initial_state`` ``(B, 2**num_qubits)`` (real or complex) replaces ``|0...0>``.
        """
        if inputs.dim() != 2 or inputs.shape[1] != self.num_inputs:
            raise ValueError(
                f"inputs must have shape (batch, {self.num_inputs}), got {tuple(inputs.shape)}"
            )
        weight = self.weight
        rdtype, device = weight.dtype, weight.device
        cdtype = torch.complex128 if rdtype == torch.float64 else torch.complex64
        batch, dim = inputs.shape[0], 2**self.num_qubits

        variables = torch.cat([inputs.to(device, rdtype), weight.expand(batch, -1)], 1)
        angles = torch.addmm(self._angle_b.to(rdtype), variables, self._angle_a.to(rdtype))
        if self._nonaffine:
            values = torch.stack([f(variables) for f in self._nonaffine], 1)
            angles = angles.index_add(1, self._nonaffine_slots, values)
        cos, sin = torch.cos(angles), torch.sin(angles)
        mats = [group(cos, sin) for group in self.groups]

        steps = self._steps
        if initial_state is None:
            sdtype = rdtype if self.real else cdtype
            state = self.prefix.product_state(cos, sin, sdtype)  # built in the first frame
            steps = steps[1:] if steps and steps[0][0] == "rotate" else steps
        else:
            if initial_state.shape != (batch, dim):
                raise ValueError(
                    f"initial_state must have shape ({batch}, {dim}), "
                    f"got {tuple(initial_state.shape)}"
                )
            sdtype = rdtype if self.real and not initial_state.is_complex() else cdtype
            state = self.prefix.apply(initial_state.to(device, sdtype), cos, sin)
        blocks = [mats[g][per_sample][i].to(sdtype) for g, per_sample, i in self._refs]
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (state, *blocks))
        memory = self._saved_memory(len(blocks) * batch * dim, sdtype, device) if grad else None
        state = _Evolve.apply(state, steps, memory, *blocks)
        return self._expectations(state).to(inputs.device)

    def _saved_memory(
        self, size: int, dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, _Lease] | None:
        """Memory for the states the evolution saves for backward, reused across training steps.

        Fresh memory would be returned to the OS after every backward and page-faulted in again
        on the next step (a third of a step's time at 14 qubits). ``None`` while an earlier
        graph still holds it; a retained graph whose memory was reused fails torch's saved-tensor
        version check instead of returning wrong gradients.
        """
        lease = self._lease() if self._lease is not None else None
        if lease is not None and not lease.released:
            return None
        memory = self._memory
        if (
            memory is None
            or memory.numel() < size
            or memory.dtype != dtype
            or (memory.device != device)
        ):
            self._memory = None
            memory = self._memory = torch.empty(size, dtype=dtype, device=device)
        lease = _Lease()
        self._lease = weakref.ref(lease)
        return memory, lease

    def __getstate__(self) -> dict:
        """Pickle/deepcopy without the reusable memory and its (unpicklable) weak lease."""
        return {**self.__dict__, "_memory": None, "_lease": None}

    def _expectations(self, state: torch.Tensor) -> torch.Tensor:
        """Real part of ``<ψ|O_j|ψ>`` for every observable."""
        rdtype = self.weight.dtype
        probs = state.real.square() + state.imag.square() if state.is_complex() else state.square()
        out = probs @ self._diag.to(rdtype)
        for index, d_re, d_im in zip(self._flip_index, self._flip_re, self._flip_im, strict=True):
            prod = state.index_select(1, index).conj() * state
            if prod.is_complex():
                out = out + prod.real @ d_re.to(rdtype) - prod.imag @ d_im.to(rdtype)
            else:
                out = out + prod @ d_re.to(rdtype)
        return out


# ------------------------------------------------------------------------------ flattening
def _flatten(circuit: QuantumCircuit, angles: _Angles) -> list[_Gate]:
    """Expand ``circuit`` into supported 1- and 2-qubit gates, registering their angle slots.

    Input-dependent gates always come out as 1-qubit rotations.
    """
    gates: list[_Gate] = []

    def visit(circ: QuantumCircuit, qubit_map: Sequence[int], top: int | None, where: str) -> None:
        for index, inst in enumerate(circ.data):
            op, at = inst.operation, index if top is None else top
            qubits = tuple(qubit_map[circ.find_bit(q).index] for q in inst.qubits)
            label = f"{op.name!r} at instruction {at}{where}"
            symbolic = any(isinstance(p, ParameterExpression) and p.parameters for p in op.params)
            if op.name in _IGNORED:
                continue
            if (
                symbolic
                and op.name in _ROTATIONS
                and (len(qubits) == 1 or not angles.depends_on_inputs(op.params[0]))
            ):
                gates.append(_rotation(op, qubits, label, angles))
            elif symbolic and op.name == "u":  # U(θ, φ, λ) = RZ(φ) RY(θ) RZ(λ) up to phase
                theta, phi, lam = op.params
                for rot in (RZGate(lam), RYGate(theta), RZGate(phi)):
                    gates.append(_rotation(rot, qubits, label, angles))
            elif (
                not symbolic
                and isinstance(op, Gate)
                and op.num_qubits <= 2
                and ((matrix := _matrix(op)) is not None)
            ):
                gates.append(_Gate(qubits, (matrix,), label))
            elif op.definition is not None:
                visit(op.definition, qubits, at, f"{where} inside {op.name!r}")
            else:
                raise ValueError(
                    f"cannot simulate {label}: it is not a unitary gate with a "
                    "known matrix or a definition (measure/reset are unsupported)"
                )

    visit(circuit, range(circuit.num_qubits), None, "")
    return gates


def _matrix(op: Gate) -> np.ndarray | None:
    """The gate's matrix with round-off cleaned (so real gates are detected as real), if any."""
    try:
        m = np.asarray(op.to_matrix(), dtype=complex)
    except (CircuitError, TypeError, AttributeError):
        return None
    return np.where(np.abs(m.real) < 1e-14, 0, m.real) + 1j * np.where(
        np.abs(m.imag) < 1e-14, 0, m.imag
    )


def _rotation(op: Gate, qubits: tuple[int, ...], label: str, angles: _Angles) -> _Gate:
    """Write ``op(θ)`` as ``A0 + cos(φ) Ac + sin(φ) As`` with ``φ = θ/2`` (or ``θ`` for phases)."""

    def at(theta: float) -> np.ndarray:
        g = op.copy()
        g.params = [theta]
        return _matrix(g)

    for scale in (0.5, 1.0):
        m0, m_pi, m_half = at(0.0), at(np.pi / scale), at(np.pi / 2 / scale)
        a0, ac = (m0 + m_pi) / 2, (m0 - m_pi) / 2
        mats = (a0, ac, m_half - a0)
        if all(
            np.allclose(at(phi / scale), a0 + np.cos(phi) * ac + np.sin(phi) * mats[2], atol=1e-12)
            for phi in (0.7, -2.1)
        ):
            slot = angles.add(op.params[0], scale, label)
            return _Gate(qubits, mats, label, slot, angles.depends_on_inputs(op.params[0]))
    raise AssertionError(f"{label} is not a rotation")  # unreachable for _ROTATIONS


# ---------------------------------------------------------------------------- fusion & plan
def _split_prefix(gates: list[_Gate], n: int) -> tuple[list[list[_Gate]], list[_Gate]]:
    """Each qubit's leading 1-qubit gates (before its first multi-qubit gate), and the rest.

    Applied to ``|0...0>`` the leading gates give a product state, which is cheap to build.
    """
    prefix: list[list[_Gate]] = [[] for _ in range(n)]
    rest, entangled = [], set()
    for g in gates:
        if len(g.qubits) == 1 and g.qubits[0] not in entangled:
            prefix[g.qubits[0]].append(g)
        else:
            entangled.update(g.qubits)
            rest.append(g)
    return prefix, rest


def _fuse(gates: list[_Gate], n: int, width: int) -> list[_Block]:
    """Greedy fusion: from the first unfused gate, take the window absorbing the most gates."""
    remaining = list(range(len(gates)))
    blocks = []
    while remaining:
        seed = set(gates[remaining[0]].qubits)
        windows = [tuple((s + i) % n for i in range(width)) for s in range(n if width < n else 1)]
        candidates = [_scan(gates, remaining, w, False) for w in windows if seed <= set(w)]
        if not candidates:  # a 2-qubit gate on distant qubits
            candidates = [_scan(gates, remaining, tuple(sorted(seed)), True)]
        block = max(candidates, key=lambda b: len(b.gates))
        blocks.append(block)
        taken = set(block.gates)
        remaining = [i for i in remaining if i not in taken]
    return blocks


def _scan(gates: list[_Gate], remaining: list[int], window: tuple[int, ...], split: bool) -> _Block:
    """The block on ``window`` formed by the gates of ``remaining`` that can move into it.

    A gate joins when it lies in the window and shares no qubit with a skipped gate (so it
    commutes past them). Qubit states keep ``after @ layer @ before`` equal to the gate order:
    weight-only gates go to ``before`` until an input-dependent gate has touched one of their
    qubits, and input-dependent gates join the layer only on qubits not yet touched by ``after``.
    """
    block = _Block(window, split)
    inside, blocked, state, rotations = set(window), set(), {}, 0
    for i in remaining:
        g = gates[i]
        fits = inside.issuperset(g.qubits) and blocked.isdisjoint(g.qubits)
        if fits and g.per_sample:
            fits = state.get(g.qubits[0]) != "after"
        if not fits or (g.slot is not None and rotations >= _MAX_FACTORS):
            blocked.update(g.qubits)
            if blocked >= inside:
                break
            continue
        rotations += g.slot is not None
        if g.per_sample:
            block.layer.setdefault(g.qubits[0], []).append(i)
            state[g.qubits[0]] = "layer"
        elif state.keys().isdisjoint(g.qubits):
            block.before.append(i)
        else:
            block.after.append(i)
            state.update(dict.fromkeys(g.qubits, "after"))
    return block


def _kernel(block: _Block, frame: int, n: int) -> tuple[float, str, tuple[int, ...]]:
    """Cost, kernel and physical bit position(s) of ``block`` under rotation ``frame``.

    A window is applied only once rotated to the low bits, where its GEMM is efficient.
    """
    if block.split:
        pos = tuple(sorted((q - frame) % n for q in block.window))
        return _COST["split" if pos[0] >= 4 else "split_narrow"], "split", pos
    if block.window[0] == frame:
        return _COST["low"], "low", (0,)
    return math.inf, "", ()


def _schedule(blocks: list[_Block], n: int) -> list[tuple[int, str, tuple[int, ...]]]:
    """Per block (rotation frame, kernel, position) minimising the total cost (DP over frames).

    Between blocks the state may be rotated to any frame at a fixed cost.
    """
    cost, steps = [0.0] * n, []
    for block in blocks:
        best = min(range(n), key=cost.__getitem__)
        rotated = cost[best] + _COST["rotate"]
        new, choice = [], []
        for r in range(n):
            prev = r if cost[r] <= rotated else best
            c, kind, pos = _kernel(block, r, n)
            new.append(cost[prev] + (prev != r) * _COST["rotate"] + c)
            choice.append((prev, kind, pos))
        steps.append(choice)
        cost = new
    frame, plan = min(range(n), key=cost.__getitem__), []
    for choice in reversed(steps):
        prev, kind, pos = choice[frame]
        plan.append((frame, kind, pos))
        frame = prev
    return plan[::-1]


def _compile_ops(
    blocks: list[_Block], plan: list[tuple[int, str, tuple[int, ...]]], n: int
) -> tuple[list[tuple], list[tuple[int, bool, int]], list[list[int]]]:
    """Evolution steps, the matrix of each block step, and the blocks of each matrix group.

    Steps are ``("rotate", t)`` or ``(kernel, position, width, per_sample)``. Blocks are grouped
    by window width; a block's matrix is ``(group, per_sample, index)`` where ``index`` counts
    the group's shared and per-sample blocks separately, in order.
    """
    steps: list[tuple] = []
    refs: list[tuple[int, bool, int]] = []
    groups: dict[int, int] = {}
    members: list[list[int]] = []
    counts: list[list[int]] = []
    frame = 0
    for b, (block, (r, kind, pos)) in enumerate(zip(blocks, plan, strict=True)):
        if r != frame:
            steps.append(("rotate", (r - frame) % n))
            frame = r
        g = groups.setdefault(len(block.window), len(groups))
        if g == len(members):
            members.append([])
            counts.append([0, 0])
        per_sample = bool(block.layer)
        steps.append((kind, pos, len(block.window), per_sample))
        refs.append((g, per_sample, counts[g][per_sample]))
        counts[g][per_sample] += 1
        members[g].append(b)
    return steps, refs, members


def _embed(mat: np.ndarray, qubits: tuple[int, ...], local: tuple[int, ...]) -> np.ndarray:
    """``mat`` on ``qubits`` as a matrix on the block's ``local`` qubits (identity elsewhere)."""
    bits = [local.index(q) for q in qubits]
    idx = np.arange(1 << len(local))
    sub = sum(((idx >> b) & 1) << j for j, b in enumerate(bits))
    rest = idx & ~sum(1 << b for b in bits)
    return mat[np.ix_(sub, sub)] * (rest[:, None] == rest[None, :])


# ------------------------------------------------------------------------------- kernels
class _Evolve(torch.autograd.Function):
    """Runs the op list on a state; the hand-written backward avoids per-op autograd overhead.

    ``steps`` are ``("rotate", t)`` or ``(kernel, position, width, per_sample)``, one block matrix
    per kernel step. The backward rotates back and uses the adjoint of each GEMM. ``memory``
    (optional, leased) receives the rotated states that are saved as block inputs.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        state: torch.Tensor,
        steps: list[tuple],
        memory: tuple[torch.Tensor, _Lease] | None,
        *mats: torch.Tensor,
    ) -> torch.Tensor:
        """Apply ``steps`` to ``state``, keeping each block's input if a gradient is needed."""
        keep = any(ctx.needs_input_grad)
        inputs, blocks, state = [], iter(mats), state.contiguous()
        for step in steps:
            if step[0] == "rotate":
                out = None
                if keep and memory is not None:
                    out = memory[0][len(inputs) * state.numel() :][: state.numel()]
                state = _rotate(state, step[1], out)
            else:
                if keep:
                    inputs.append(state)
                state = _apply(state, next(blocks), *step)
        ctx.steps, ctx.lease = steps, memory[1] if memory is not None else None
        ctx.save_for_backward(*inputs, *mats)
        return state

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        """Gradients of the initial state and of every block matrix."""
        saved, grad = ctx.saved_tensors, grad.contiguous()
        n_blocks = len(saved) // 2  # block inputs, then block matrices
        inputs, mats = saved[:n_blocks], saved[n_blocks:]
        grads: list[torch.Tensor | None] = [None] * n_blocks
        n = grad.shape[1].bit_length() - 1
        i = n_blocks
        # Two ping-pong buffers hold every intermediate gradient (fresh 2**Q-sized tensors would
        # be page-faulted in over and over).
        buffers = (torch.empty_like(grad), torch.empty_like(grad))
        for step in reversed(ctx.steps):
            spare = buffers[grad.data_ptr() == buffers[0].data_ptr()]
            if step[0] == "rotate":
                grad = _rotate(grad, (n - step[1]) % n, spare)
                continue
            i -= 1
            x, mat = inputs[i], mats[i]
            kind, _, width, per_sample = step
            if kind == "low":
                batch, dim, k = x.shape[0], x.shape[1], 1 << width
                gv = grad.view(batch, -1, k) if per_sample else grad.view(-1, k)
                xv = x.view(batch, -1, k) if per_sample else x.view(-1, k)
                if ctx.needs_input_grad[3 + i]:
                    grads[i] = gv.mT @ xv.conj()
                grad = torch.matmul(gv, mat.conj(), out=spare.view(gv.shape)).view(batch, dim)
            else:  # a distant pair is rare: differentiate its kernel with autograd
                with torch.enable_grad():
                    xs, ms = x.detach().requires_grad_(), mat.detach().requires_grad_()
                    grad, grads[i] = torch.autograd.grad(_apply(xs, ms, *step), (xs, ms), grad)
        if ctx.lease is not None:
            ctx.lease.released = True
        return grad, None, None, *grads


def _rotate(state: torch.Tensor, t: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Cyclically shift the qubit order: the ``t`` lowest qubit axes move to the top."""
    batch, dim = state.shape
    moved = state.view(batch, dim >> t, 1 << t).transpose(1, 2)
    if out is None:
        return moved.reshape(batch, dim)
    return out.view(batch, 1 << t, dim >> t).copy_(moved).view(batch, dim)


def _apply(
    state: torch.Tensor,
    mat: torch.Tensor,
    kind: str,
    pos: tuple[int, ...],
    width: int,
    per_sample: bool,
) -> torch.Tensor:
    """Apply a ``2**width`` block on the lowest bits, or a 2-qubit "split" block on bits ``pos``."""
    batch, dim = state.shape
    if kind == "low":
        k = 1 << width
        if per_sample:
            return torch.bmm(state.view(batch, -1, k), mat.mT).view(batch, dim)
        return (state.view(-1, k) @ mat.T).view(batch, dim)
    lo, hi = pos  # two distant qubits: bring them together, apply, move back
    view = state.view(batch, dim >> (hi + 1), 2, 1 << (hi - lo - 1), 2, 1 << lo)
    moved = view.transpose(2, 3).reshape(batch, -1, 4, 1 << lo)
    out = torch.matmul(mat[:, None] if per_sample else mat, moved)
    shape = (batch, view.shape[1], view.shape[3], 2, 2, 1 << lo)
    return out.view(shape).transpose(2, 3).reshape(batch, dim)


# ------------------------------------------------------------------------- block matrices
def _factor_buffers(
    module: nn.Module, name: str, factors: list[tuple[int, Sequence[np.ndarray]]], size: int
) -> bool:
    """Register the ``(A0, Ac, As)`` of ``factors`` (real and imaginary parts) and their slots.

    Constants are stored in float64 (so ``.double()`` is exact) and cast to the module's dtype
    when used.
    """
    a = np.array([np.stack(m) for _, m in factors]).reshape(len(factors), 3, size)
    module.register_buffer(f"{name}_re", torch.tensor(a.real, dtype=torch.float64))
    module.register_buffer(f"{name}_im", torch.tensor(a.imag, dtype=torch.float64))
    module.register_buffer(f"{name}_slot", torch.tensor([s for s, _ in factors], dtype=torch.long))
    return bool(np.any(a.imag))


def _factors(
    module: nn.Module, name: str, complex_: bool, cos: torch.Tensor, sin: torch.Tensor
) -> torch.Tensor:
    """Evaluate registered factors ``A0 + cos(φ) Ac + sin(φ) As`` at every row: ``(F, B, m)``."""
    re, im, slot = (getattr(module, f"{name}_{part}") for part in ("re", "im", "slot"))
    re, im = re.to(cos.dtype), im.to(cos.dtype)
    a = torch.complex(re, im) if complex_ else re
    c, s = cos[:, slot], sin[:, slot]
    coef = torch.stack([torch.ones_like(c), c, s], -1).to(a.dtype)
    return torch.einsum("bfj,fjm->fbm", coef, a)


def _padded(gates: Sequence[_Gate], depth: int) -> list[tuple[int, Sequence[np.ndarray]]]:
    """1-qubit gates as factors (fixed ones with zero ``Ac, As``), identity-padded to ``depth``."""
    zero = np.zeros((2, 2))
    factors = [
        (g.slot, g.mats) if g.slot is not None else (0, (g.mats[0], zero, zero)) for g in gates
    ]
    return factors + [(0, (np.eye(2), zero, zero))] * (depth - len(factors))


class _Prefix(nn.Module):
    """The leading 1-qubit gates of every qubit: a product state, or a product operator."""

    def __init__(self, prefix: list[list[_Gate]], order: list[int]) -> None:
        super().__init__()
        self.order = order  # logical qubit at each physical bit of the first frame
        self.depth = max(len(p) for p in prefix)
        self.active = [q for q, p in enumerate(prefix) if p]
        self.complex = _factor_buffers(
            self, "_f", [f for p in prefix for f in _padded(p, self.depth)], 4
        )

    def _mats(self, cos: torch.Tensor, sin: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Per-qubit products of the leading gates, ``(n, B, 2, 2)``."""
        f = _factors(self, "_f", self.complex, cos, sin).to(dtype)
        f = f.view(len(self.order), self.depth, cos.shape[0], 2, 2)
        mats = f[:, 0]
        for d in range(1, self.depth):
            mats = f[:, d] @ mats
        return mats

    def product_state(
        self, cos: torch.Tensor, sin: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor:
        """``⊗_q U_q |0>`` in the first frame's qubit order, ``(B, 2**n)``."""
        batch = cos.shape[0]
        if not self.depth:
            state = torch.zeros(batch, 1 << len(self.order), dtype=dtype, device=cos.device)
            state[:, 0] = 1.0
            return state
        columns = self._mats(cos, sin, dtype)[..., 0]  # (n, B, 2)
        state = columns[self.order[0]]
        for q in self.order[1:]:
            state = (columns[q][:, :, None] * state[:, None, :]).reshape(batch, -1)
        return state

    def apply(self, state: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """``(⊗_q U_q) state`` for a state in the circuit's own qubit order."""
        if not self.active:
            return state
        batch, dim = state.shape
        mats = self._mats(cos, sin, state.dtype)
        for q in self.active:
            view = state.view(batch, dim >> (q + 1), 2, 1 << q)
            state = torch.matmul(mats[q][:, None], view).view(batch, dim)
        return state


class _BlockGroup(nn.Module):
    """Builds the matrices of all blocks of one window width in a few batched ops.

    Weight-only products (a shared block, or ``before``/``after`` of a per-sample block) are lists
    of factors ``A0 + cos(φ) Ac + sin(φ) As`` in the block's local basis, padded with identities to
    a power of two and multiplied as a log-depth tree. A per-sample layer is the Kronecker product
    over the window qubits of each qubit's 2x2 input-dependent gates; the batch is folded into the
    matrix dimensions so that ``after @ layer @ before`` is two GEMMs.
    """

    def __init__(self, gates: list[_Gate], blocks: list[tuple[_Block, int]], n: int) -> None:
        super().__init__()
        self.width = len(blocks[0][0].window)
        k = 1 << self.width
        shared = [(b.before, b, f) for b, f in blocks if not b.layer]
        layered = [(b, f) for b, f in blocks if b.layer]
        products = (
            shared + [(b.before, b, f) for b, f in layered] + [(b.after, b, f) for b, f in layered]
        )
        self.n_shared, self.n_layered = len(shared), len(layered)

        eye, zero = np.eye(k), np.zeros((k, k))
        factors: list[tuple[int, list[np.ndarray]]] = []
        members: list[list[int]] = []
        for indices, block, frame in products:
            local = block.local_qubits(frame, n)
            first, pending = len(factors), eye
            for g in (gates[i] for i in indices):
                mats = [_embed(m, g.qubits, local) for m in g.mats]
                if g.slot is None:  # fixed gate: fold into the next rotation
                    pending = mats[0] @ pending
                else:
                    factors.append((g.slot, [m @ pending for m in mats]))
                    pending = eye
            if len(factors) == first:
                factors.append((0, [pending, zero, zero]))
            else:  # trailing fixed gates fold into the last rotation
                slot, mats = factors[-1]
                factors[-1] = (slot, [pending @ m for m in mats])
            members.append(list(range(first, len(factors))))
        self.length = 1 << max(math.ceil(math.log2(len(m))) for m in members)
        index = [m + [len(factors)] * (self.length - len(m)) for m in members]  # pad: identity
        self.register_buffer("_index", torch.tensor(index).flatten())
        self.register_buffer("_eye", torch.eye(k).flatten())

        # layer: per block, per local qubit, `depth` 2x2 factors (identity padded)
        self.depth = max((len(v) for b, _ in layered for v in b.layer.values()), default=0)
        layer = [
            f
            for block, frame in layered
            for q in block.local_qubits(frame, n)
            for f in _padded([gates[i] for i in block.layer.get(q, [])], self.depth)
        ]
        self.complex = _factor_buffers(self, "_a", factors, k * k) | _factor_buffers(
            self, "_l", layer, 4
        )

    def forward(
        self, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """Matrices of the shared blocks and per-sample ``(B, K, K)`` ones, in block order."""
        k = 1 << self.width
        factors = _factors(self, "_a", self.complex, cos[:1], sin[:1])[:, 0]
        prod = torch.cat([factors, self._eye.to(factors.dtype)[None]])[self._index]
        prod = prod.view(-1, self.length, k, k)
        while prod.shape[1] > 1:
            prod = prod[:, 1::2] @ prod[:, 0::2]
        prod = prod[:, 0]
        shared = prod[: self.n_shared].unbind(0)
        if not self.n_layered:
            return shared, ()
        batch, n_l = cos.shape[0], self.n_layered
        two = _factors(self, "_l", self.complex, cos, sin)
        two = two.view(n_l, self.width, self.depth, batch, 2, 2)
        layer = two[:, :, 0]
        for d in range(1, self.depth):
            layer = two[:, :, d] @ layer
        kron = layer[:, 0]  # (n_l, B, m, m); local qubit 0 is the least significant
        for j in range(1, self.width):
            m = 1 << j
            outer = layer[:, j].reshape(n_l, batch, 4, 1) @ kron.reshape(n_l, batch, 1, m * m)
            kron = (
                outer.view(n_l, batch, 2, 2, m, m).transpose(3, 4).reshape(n_l, batch, 2 * m, 2 * m)
            )
        before = prod[self.n_shared : self.n_shared + n_l]
        after = prod[self.n_shared + n_l :]
        left = torch.bmm(after, kron.transpose(1, 2).reshape(n_l, k, batch * k))
        left = left.view(n_l, k, batch, k).transpose(1, 2).reshape(n_l, batch * k, k)
        return shared, torch.bmm(left, before).view(n_l, batch, k, k).unbind(0)
