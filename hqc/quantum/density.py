"""Noisy expectation values from a batched torch density-matrix simulation, to train under noise.

Aer's ``density_matrix`` method is exact but runs one job per sample with parameter-shift
gradients; :class:`DensityQNN` gives the same numbers (to round-off) as a torch module with
autograd gradients, for circuits up to about 12 qubits and small batches.

Why a density matrix and not quantum trajectories: trajectories converge like
``1/sqrt(trajectories)`` and would not reproduce Aer's exact noisy values; the density matrix costs
``4**Q`` per operation instead of ``2**Q``, which is affordable at the sizes a noisy head uses.

Representation. ρ is stored vectorised, one base-4 digit ``d = 2·j + i`` per qubit (ket ``i``,
bra ``j``): the ``(B, 4**Q)`` tensor is a statevector of ``Q`` four-level systems, and a
``k``-qubit channel is a ``4**k x 4**k`` matrix on ``k`` of its axes. This per-qubit digit is
Qiskit's column-stacking ``i + 2·j``, so ``SuperOp(error)`` only needs its digits regrouped per
qubit for two qubits. A gate followed by its attached error is one superoperator
``E · (conj(U) ⊗ U)``.

Compilation (construction time):

* The circuit is transpiled to the noise model's basis gates at ``optimization_level=0`` (the same
  circuit Aer runs, so errors attach to the same instructions by gate name).
* Every gate angle is affine in the inputs and weights (transpilation gives ``rz(2θ)``,
  ``rz(π + a)``; other expressions raise); one matmul gives all angles ``φ`` of a forward. With
  ``U = A0 + cos φ Ac + sin φ As`` the superoperator is quadratic in ``(cos φ, sin φ)``: six
  constant matrices per rotation (error and neighbouring fixed gates folded in), one einsum.
* Gates are fused greedily into blocks on two qubits (16 x 16 superoperators): a 1-qubit gate
  joins the last block on its qubit, a 2-qubit gate joins a block on the same pair or absorbs the
  1-qubit blocks of its qubits. A block is one GEMM (shared) or batched GEMM (input-dependent).
* The state's axis order is tracked; a block's qubits are moved to the last axes (one copy) only
  when they are not already there. Observables are gathered in the final order.
* When every superoperator is real (RY, CX, depolarising, relaxation: hqc's circuits), ρ stays
  real and the simulation runs in real arithmetic (a quarter of the complex flops).
* Readout error (symmetric bit flips ``p`` on the measured Z-basis outcomes) is linear in the
  outcome probabilities, so it is folded into the Z-string coefficients at construction:
  ``<Z_S> -> (1 - 2p)**|S| <Z_S>``.

Gradients come from autograd; with gradients enabled the blocks run in about ``sqrt(n)``
checkpointed segments, so memory holds ``O(sqrt n)`` density matrices instead of one per block.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import CircuitInstruction, Gate, Parameter, ParameterExpression
from qiskit.quantum_info import SparsePauliOp, SuperOp
from torch import nn
from torch.utils.checkpoint import checkpoint

from hqc.errors import UserError
from hqc.noise.aer import gate_errors, transpile_to_basis
from hqc.noise.spec import FAKE_PREFIX, NoiseSpec, resolve

if TYPE_CHECKING:
    from qiskit_aer.noise import QuantumError

_IGNORED = frozenset({"barrier"})
_WIDTH = 2  # qubits per fused block


@dataclass
class _Gate:
    """A transpiled gate: its superoperator(s) in per-qubit digit order, error included.

    ``terms`` holds one constant matrix, or for a rotation at angle ``slot`` the six matrices
    multiplying ``1, c, s, c², c·s, s²`` (``c, s = cos φ, sin φ``).
    """

    qubits: tuple[int, ...]
    terms: list[np.ndarray]
    slot: int | None = None


@dataclass
class _Block:
    """Gates fused onto ``qubits``, in order."""

    qubits: tuple[int, ...]
    gates: list[int] = field(default_factory=list)


def _grouped(superop: np.ndarray, k: int) -> np.ndarray:
    """A Qiskit column-stacked ``k``-qubit superoperator with digits regrouped per qubit.

    Column stacking indexes ``i + 2**k · j`` (axes ``j_{k-1}..j_0, i_{k-1}..i_0``); the per-qubit
    order is ``(j_{k-1}, i_{k-1}), ..., (j_0, i_0)``.
    """
    if k == 1:
        return superop
    perm = [a for q in range(k) for a in (q, q + k)]
    shape = (2,) * (2 * k)
    t = superop.reshape(shape + shape).transpose(perm + [2 * k + p for p in perm])
    return t.reshape(superop.shape)


def _unitary_superop(u: np.ndarray, v: np.ndarray | None = None) -> np.ndarray:
    """``conj(u) ⊗ v`` (``v = u`` by default) in per-qubit digit order."""
    k = u.shape[0].bit_length() - 1
    return _grouped(np.kron(u.conj(), u if v is None else v), k)


def _embed(terms: list[np.ndarray], qubits: tuple[int, ...], local: tuple[int, ...]) -> list:
    """A gate's superoperator(s) on ``qubits`` as matrices on a block's ``local`` qubits."""
    if qubits == local:
        return terms
    if len(qubits) == 2:  # the pair in the other order: swap the two base-4 digits
        return [t.reshape(4, 4, 4, 4).transpose(1, 0, 3, 2).reshape(16, 16) for t in terms]
    eye = np.eye(4 ** (len(local) - 1))
    first = local.index(qubits[0]) == 0  # digit 0 is the least significant
    return [np.kron(eye, t) if first else np.kron(t, eye) for t in terms]


class DensityQNN(nn.Module):
    """Noisy expectation values of ``observables`` after ``circuit``, differentiable by autograd.

    The same interface as :class:`~hqc.quantum.torch_qnn.TorchQNN`: ``forward(inputs,
    initial_state=None)`` maps ``inputs`` ``(B, len(input_params))`` to ``(B, len(observables))``;
    outputs follow the module's dtype (``.double()`` gives float64) and device.

    Args:
        circuit: A unitary Qiskit circuit (measure/reset raise).
        observables: One ``SparsePauliOp`` or a sequence of them on ``circuit.num_qubits``.
        input_params: Circuit parameters fed from the columns of ``inputs``, in order.
        weight_params: Circuit parameters bound to ``self.weight``, in order.
        noise: The gate and readout noise: a spec or preset name (see :mod:`hqc.noise.spec`);
            ``None`` simulates the ideal circuit (still transpiled to the default basis).
        initial_weights: Initial ``weight``; uniform in [-1, 1] when omitted, as TorchQNN.

    Readout error is modelled for Z-string observables only (their outcomes are read in the
    computational basis); with readout error, an observable with X or Y raises.
    ``initial_state`` is a pure state prepared without noise.
    """

    def __init__(
        self,
        circuit: QuantumCircuit,
        observables: SparsePauliOp | Sequence[SparsePauliOp],
        input_params: Sequence[Parameter] = (),
        weight_params: Sequence[Parameter] = (),
        noise: NoiseSpec | str | None = None,
        initial_weights: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if isinstance(noise, str) and noise.startswith(FAKE_PREFIX):
            raise UserError(
                f"noise={noise!r}: a fake backend's errors are per physical qubit; the torch "
                "density-matrix path takes a noise spec or preset (rates shared by all qubits)"
            )
        spec = resolve(NoiseSpec() if noise is None else noise)
        assert isinstance(spec, NoiseSpec)  # only fake backends resolve to a name
        errors, readout = gate_errors(spec), spec.readout_error
        transpiled = transpile_to_basis(circuit, spec)
        self._build(transpiled, observables, input_params, weight_params, errors, readout)
        self.weight = _initial_weight(len(weight_params), initial_weights)

    @classmethod
    def from_errors(
        cls,
        circuit: QuantumCircuit,
        observables: SparsePauliOp | Sequence[SparsePauliOp],
        input_params: Sequence[Parameter],
        weight_params: Sequence[Parameter],
        errors: Mapping[str, QuantumError],
        readout_error: float = 0.0,
        initial_weights: torch.Tensor | None = None,
    ) -> DensityQNN:
        """A module for an already transpiled ``circuit`` with errors keyed by gate name.

        ``errors`` attach after every instruction of that name, as in an Aer ``NoiseModel``
        built with ``add_all_qubit_quantum_error``; ``readout_error`` is a symmetric flip
        probability per measured qubit.
        """
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        module._build(circuit, observables, input_params, weight_params, errors, readout_error)
        module.weight = _initial_weight(len(weight_params), initial_weights)
        return module

    def _build(
        self,
        circuit: QuantumCircuit,
        observables: SparsePauliOp | Sequence[SparsePauliOp],
        input_params: Sequence[Parameter],
        weight_params: Sequence[Parameter],
        errors: Mapping[str, QuantumError],
        readout: float,
    ) -> None:
        """Compile gates, blocks, schedule and observables (see the module docstring)."""
        variables = [*input_params, *weight_params]
        if len(set(variables)) != len(variables):
            raise UserError("input_params and weight_params must be distinct parameters")
        if not 0.0 <= readout <= 1.0:
            raise UserError(f"readout_error must be a probability in [0, 1], got {readout}")
        n = self.num_qubits = circuit.num_qubits
        self.num_inputs = len(input_params)
        index = {p: i for i, p in enumerate(variables)}
        rows: list[np.ndarray] = []
        consts: list[float] = []
        per_sample: list[bool] = []
        superops = {name: _grouped(SuperOp(e).data, e.num_qubits) for name, e in errors.items()}
        gates = [
            g
            for at, inst in enumerate(circuit.data)
            if (g := _gate(inst, circuit, at, index, superops, rows, consts)) is not None
        ]
        per_sample = [bool(np.any(r[: self.num_inputs])) for r in rows]
        width = min(_WIDTH, n)
        blocks = _fuse(gates, n, width)

        # schedule: the axis order before each block and each block's local digit order
        layout = list(range(n - 1, -1, -1))  # qubit at each tensor axis, most significant first
        self._steps: list[tuple[tuple[int, ...] | None, bool]] = []
        factors: list[tuple[int | None, list[np.ndarray]]] = []
        self._block_factors: list[list[int]] = []
        for block in blocks:
            tail = layout[n - width :]
            if set(tail) == set(block.qubits):
                local = tuple(reversed(tail))
                perm = None
            else:
                local = block.qubits
                rest = [q for q in layout if q not in local]
                new = rest + list(reversed(local))
                perm = tuple(layout.index(q) for q in new)
                layout = new
            members = _fold([gates[i] for i in block.gates], local)
            self._block_factors.append(list(range(len(factors), len(factors) + len(members))))
            factors.extend(members)
            sample = any(s is not None and per_sample[s] for s, _ in members)
            self._steps.append((perm, sample))

        if not rows:
            rows, consts, per_sample = [np.zeros(len(variables))], [0.0], [False]
        self.register_buffer("_angle_a", torch.tensor(np.array(rows).T, dtype=torch.float64))
        self.register_buffer("_angle_b", torch.tensor(consts, dtype=torch.float64))
        dim = 4**width
        terms = np.zeros((len(factors), 6, dim, dim), dtype=complex)
        for f, (_, t) in enumerate(factors):
            terms[f, : len(t)] = t
        # Real superoperators (RY, CX, depolarising, relaxation) keep ρ real: 4x fewer flops.
        self.real = not np.any(np.abs(terms.imag) > 1e-15)
        terms = terms.real if self.real else terms
        self.register_buffer("_terms", torch.tensor(terms))
        self._factor_slot = [s for s, _ in factors]
        self._factor_per_sample = [s is not None and per_sample[s] for s, _ in factors]
        self._compile_observables(observables, layout, readout)

    def _compile_observables(
        self,
        observables: SparsePauliOp | Sequence[SparsePauliOp],
        layout: list[int],
        readout: float,
    ) -> None:
        """Per X-mask ``m``: indices of ``ρ[x ^ m, x]`` in the final layout and coefficients.

        ``Tr(P ρ) = Σ_x P[x, x ^ m] ρ[x ^ m, x]`` for a Pauli string ``P`` flipping bits ``m``.
        """
        obs = [observables] if isinstance(observables, SparsePauliOp) else list(observables)
        n = self.num_qubits
        if not obs:
            raise UserError("observables must contain at least one observable")
        for j, o in enumerate(obs):
            if not isinstance(o, SparsePauliOp) or o.num_qubits != n:
                raise UserError(
                    f"observable {j} must be a SparsePauliOp on the circuit's {n} qubits, got {o!r}"
                )
        self.num_outputs = len(obs)
        x = np.arange(2**n)
        bits = (x[:, None] >> np.arange(n)) & 1  # (2**n, n): bit q of x
        weights = 4 ** (n - 1 - np.array([layout.index(q) for q in range(n)]))
        coeffs: dict[int, np.ndarray] = {}
        for j, o in enumerate(obs):
            for pauli, coeff in zip(o.paulis, o.coeffs, strict=True):
                xs, zs = pauli.x.astype(int), pauli.z.astype(int)
                mask = int((xs << np.arange(n)).sum())
                # P[x, x ^ m] = (-i)^phase Π_q P_q[x_q, x_q ^ m_q]; Y[r, 1 - r] = -i (-1)^r
                signs = (-1.0) ** (bits @ zs)
                term = coeff * (-1j) ** (pauli.phase + int((xs & zs).sum())) * signs
                coeffs.setdefault(mask, np.zeros((2**n, len(obs)), dtype=complex))[:, j] += term
        masks = sorted(coeffs)
        if readout and any(np.any(coeffs[m]) for m in masks if m):
            bad = [j for j, o in enumerate(obs) if np.any(o.paulis.x)]
            raise UserError(
                f"readout_error is modelled for Z-basis observables only; observables {bad} "
                "contain X or Y terms (rotate them into Z in the circuit)"
            )
        if 0 in coeffs and readout:
            flip = np.array([[1 - readout, readout], [readout, 1 - readout]])
            c = coeffs[0].reshape((2,) * n + (len(obs),))
            for axis in range(n):
                c = np.moveaxis(np.tensordot(flip, c, axes=([1], [axis])), 0, axis)
            coeffs[0] = c.reshape(2**n, len(obs))
        digits = 2 * bits  # bra j = x
        index = [((digits + (bits ^ ((m >> np.arange(n)) & 1))) @ weights) for m in masks]
        self._masks = masks
        self.register_buffer("_obs_index", torch.tensor(np.array(index), dtype=torch.long))
        self.register_buffer(
            "_obs_coeff", torch.tensor(np.array([coeffs[m] for m in masks]), dtype=torch.complex128)
        )

    def forward(
        self, inputs: torch.Tensor, initial_state: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Expectations ``(B, num_outputs)`` for ``inputs`` ``(B, num_inputs)``.

        ``initial_state`` ``(B, 2**num_qubits)`` (real or complex amplitudes) replaces
        ``|0...0>``.
        """
        if inputs.dim() != 2 or inputs.shape[1] != self.num_inputs:
            raise ValueError(
                f"inputs must have shape (batch, {self.num_inputs}), got {tuple(inputs.shape)}"
            )
        rdtype, device = self.weight.dtype, self.weight.device
        cdtype = torch.complex128 if rdtype == torch.float64 else torch.complex64
        batch, n = inputs.shape[0], self.num_qubits
        if batch == 0:  # as TorchQNN: an empty output, and a zero weight gradient
            empty = self.weight.new_zeros(0, self.num_outputs) + 0.0 * self.weight.sum()
            return empty.to(inputs.device)
        variables = torch.cat([inputs.to(device, rdtype), self.weight.expand(batch, -1)], 1)
        angles = torch.addmm(self._angle_b.to(rdtype), variables, self._angle_a.to(rdtype))
        real = self.real and (initial_state is None or not initial_state.is_complex())
        sdtype = rdtype if real else cdtype
        mats = self._block_mats(angles, sdtype)
        if initial_state is None:
            state = torch.zeros(batch, 4**n, dtype=sdtype, device=device)
            state[:, 0] = 1.0
        else:
            state = _vectorise(initial_state.to(device, sdtype), batch, n)
        if torch.is_grad_enabled() and len(mats) > 1:
            size = math.ceil(math.sqrt(len(mats)))
            for start in range(0, len(mats), size):
                stop = min(start + size, len(mats))
                state = checkpoint(
                    self._evolve, state, start, *mats[start:stop], use_reentrant=False
                )
        else:
            state = self._evolve(state, 0, *mats)
        out = torch.zeros(batch, self.num_outputs, dtype=rdtype, device=device)
        for m, index, coeff in zip(self._masks, self._obs_index, self._obs_coeff, strict=True):
            values = state.index_select(1, index)
            if m == 0 or not values.is_complex():  # m == 0: real outcome probabilities
                out = out + values.real @ coeff.real.to(rdtype)
            else:
                out = out + (values @ coeff.to(cdtype)).real
        return out.to(inputs.device)

    def _block_mats(self, angles: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
        """Each block's superoperator: ``(D, D)``, or ``(B, D, D)`` when input-dependent."""
        cos, sin = torch.cos(angles), torch.sin(angles)
        one = torch.ones_like(cos)
        mono = torch.stack([one, cos, sin, cos * cos, cos * sin, sin * sin], -1).to(dtype)
        terms = self._terms.to(dtype)
        slots = torch.tensor([s or 0 for s in self._factor_slot], device=angles.device)
        shared = torch.einsum("fm,fmxy->fxy", mono[0, slots], terms)
        sample = [f for f, p in enumerate(self._factor_per_sample) if p]
        per_sample: dict[int, torch.Tensor] = {}
        if sample:
            chosen = torch.tensor(sample, device=angles.device)
            values = torch.einsum("bfm,fmxy->fbxy", mono[:, slots[chosen]], terms[chosen])
            per_sample = dict(zip(sample, values.unbind(0), strict=True))
        mats = []
        for members in self._block_factors:
            mat = None
            for f in members:
                factor = per_sample[f] if f in per_sample else shared[f]
                mat = factor if mat is None else factor @ mat
            mats.append(mat)
        return mats

    def _evolve(self, state: torch.Tensor, start: int, *mats: torch.Tensor) -> torch.Tensor:
        """Apply blocks ``start, start + 1, ...`` (one per matrix in ``mats``) to ``state``."""
        batch, n = state.shape[0], self.num_qubits
        for (perm, per_sample), mat in zip(self._steps[start:], mats, strict=False):
            if perm is not None:
                view = state.view(batch, *(4,) * n)
                state = view.permute(0, *(p + 1 for p in perm)).reshape(batch, -1)
            x = state.view(batch, -1, mat.shape[-1])
            state = (x @ mat.mT if per_sample else x @ mat.T).view(batch, -1)
        return state


def _initial_weight(size: int, initial_weights: torch.Tensor | None) -> nn.Parameter:
    """The ``weight`` parameter: ``initial_weights``, or uniform in [-1, 1] as TorchQNN."""
    if initial_weights is None:
        return nn.Parameter(torch.empty(size).uniform_(-1.0, 1.0))
    init = torch.as_tensor(initial_weights, dtype=torch.float32).clone()
    if init.shape != (size,):
        raise ValueError(f"initial_weights must have shape ({size},), got {tuple(init.shape)}")
    return nn.Parameter(init)


def _vectorise(psi: torch.Tensor, batch: int, n: int) -> torch.Tensor:
    """``|ψ><ψ|`` in the per-qubit digit layout (canonical axis order), ``(B, 4**n)``."""
    if psi.shape != (batch, 2**n):
        raise ValueError(f"initial_state must have shape ({batch}, {2**n}), got {tuple(psi.shape)}")
    rho = psi.conj()[:, :, None] * psi[:, None, :]  # [b, j, i] = conj(ψ_j) ψ_i
    rho = rho.view(batch, *(2,) * (2 * n))
    perm = [a for q in range(n) for a in (1 + q, 1 + n + q)]
    return rho.permute(0, *perm).reshape(batch, -1)


def _gate(
    inst: CircuitInstruction,
    circuit: QuantumCircuit,
    at: int,
    index: dict[Parameter, int],
    superops: dict[str, np.ndarray],
    rows: list[np.ndarray],
    consts: list[float],
) -> _Gate | None:
    """One transpiled instruction as a :class:`_Gate`, registering its angle slot if any."""
    op = inst.operation
    label = f"{op.name!r} at instruction {at} of the transpiled circuit"
    if op.name in _IGNORED:
        return None
    qubits = tuple(circuit.find_bit(q).index for q in inst.qubits)
    if not isinstance(op, Gate) or len(qubits) > _WIDTH:
        raise UserError(f"cannot simulate {label}: only 1- and 2-qubit gates are supported")
    error = superops.get(op.name)
    if error is not None and error.shape[0] != 4 ** len(qubits):
        raise UserError(f"the error attached to {op.name!r} does not act on {len(qubits)} qubits")
    symbolic = [p for p in op.params if isinstance(p, ParameterExpression) and p.parameters]
    if not symbolic:
        terms = [_unitary_superop(np.asarray(op.to_matrix(), dtype=complex))]
        slot = None
    elif len(op.params) == 1:
        terms, scale = _rotation_terms(op, label)
        slot = len(rows)
        rows.append(scale * _affine_row(op.params[0], index, label, consts))
        consts[-1] *= scale
    else:
        raise UserError(f"cannot simulate {label}: a gate with several free parameters")
    if error is not None:
        terms = [error @ t for t in terms]
    return _Gate(qubits, terms, slot)


def _affine_row(
    expr: ParameterExpression, index: dict[Parameter, int], label: str, consts: list[float]
) -> np.ndarray:
    """Coefficients of ``expr`` over ``[inputs, weights]``; its constant goes to ``consts``."""
    unknown = sorted(p.name for p in expr.parameters if p not in index)
    if unknown:
        raise UserError(
            f"parameter(s) {unknown} of {label} are in neither input_params nor weight_params"
        )
    row = np.zeros(len(index))
    try:
        for p in expr.parameters:
            row[index[p]] = float(expr.gradient(p))
    except TypeError:
        raise UserError(
            f"the angle {expr} of {label} is not affine in the parameters; the density-matrix "
            "simulator supports affine angles only"
        ) from None
    consts.append(float(expr.bind(dict.fromkeys(expr.parameters, 0.0))))
    return row


def _rotation_terms(op: Gate, label: str) -> tuple[list[np.ndarray], float]:
    """``op(θ)`` as ``A0 + cos(sθ) Ac + sin(sθ) As`` (``s`` = 1/2, or 1 for phases), expanded.

    Returns the six superoperator terms multiplying ``1, c, s, c², c·s, s²`` and ``s``.
    """

    def at(theta: float) -> np.ndarray:
        g = op.copy()
        g.params = [theta]
        return np.asarray(g.to_matrix(), dtype=complex)

    for scale in (0.5, 1.0):
        m0, m_pi, m_half = at(0.0), at(np.pi / scale), at(np.pi / 2 / scale)
        a0, ac = (m0 + m_pi) / 2, (m0 - m_pi) / 2
        a_s = m_half - a0
        if all(
            np.allclose(at(p / scale), a0 + np.cos(p) * ac + np.sin(p) * a_s, atol=1e-12)
            for p in (0.7, -2.1)
        ):
            k = _unitary_superop
            return [
                k(a0),
                k(a0, ac) + k(ac, a0),
                k(a0, a_s) + k(a_s, a0),
                k(ac),
                k(ac, a_s) + k(a_s, ac),
                k(a_s),
            ], scale
    raise UserError(f"cannot simulate {label}: its parameter is not a rotation angle")


def _fuse(gates: list[_Gate], n: int, width: int) -> list[_Block]:
    """Greedy fusion into blocks on ``width`` qubits, in execution order.

    A 1-qubit gate joins the last block on its qubit (nothing after that block touches the
    qubit, so the gate commutes past the later blocks). A 2-qubit gate joins the last block of
    both its qubits if that is one block, else starts a block that absorbs the 1-qubit-only last
    blocks of its qubits. Remaining 1-qubit blocks are widened to a neighbouring qubit.
    """
    last: dict[int, _Block] = {}
    blocks: list[_Block] = []
    for i, g in enumerate(gates):
        if len(g.qubits) == 1:
            block = last.get(g.qubits[0])
            if block is None:
                block = _Block(g.qubits)
                blocks.append(block)
            block.gates.append(i)
            last[g.qubits[0]] = block
            continue
        a, b = g.qubits
        if last.get(a) is not None and last.get(a) is last.get(b):
            last[a].gates.append(i)
            continue
        block = _Block((a, b))
        for q in (a, b):
            old = last.get(q)
            if old is not None and len(old.qubits) == 1:
                block.gates.extend(old.gates)
                blocks.remove(old)
        block.gates.append(i)
        blocks.append(block)
        last[a] = last[b] = block
    if width > 1:
        for block in blocks:
            if len(block.qubits) == 1:
                q = block.qubits[0]
                block.qubits = (q, (q + 1) % n)
    return blocks


def _fold(gates: list[_Gate], local: tuple[int, ...]) -> list[tuple[int | None, list[np.ndarray]]]:
    """A block as a product of factors, one per rotation, with fixed gates multiplied in.

    Returns ``(slot, terms)`` per factor in application order; a block without rotations is one
    constant factor ``(None, [matrix])``.
    """
    dim = 4 ** len(local)
    factors: list[tuple[int | None, list[np.ndarray]]] = []
    pending = np.eye(dim, dtype=complex)
    for g in gates:
        terms = _embed(g.terms, g.qubits, local)
        if g.slot is None:
            pending = terms[0] @ pending
        else:
            factors.append((g.slot, [t @ pending for t in terms]))
            pending = np.eye(dim, dtype=complex)
    if not factors:
        return [(None, [pending])]
    slot, terms = factors[-1]
    factors[-1] = (slot, [pending @ t for t in terms])
    return factors
