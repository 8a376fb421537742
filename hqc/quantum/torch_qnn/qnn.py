"""The :class:`TorchQNN` module: compiles a circuit once, then evaluates it batched."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import numpy as np
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp
from torch import nn

from hqc.quantum.torch_qnn.blocks import BlockGroup, Prefix
from hqc.quantum.torch_qnn.fusion import FUSE_QUBITS, compile_ops, fuse, schedule, split_prefix
from hqc.quantum.torch_qnn.gates import Angles, flatten
from hqc.quantum.torch_qnn.kernels import Evolve, Lease
from hqc.quantum.torch_qnn.measure import expectations, register_observables
from hqc.quantum.torch_qnn.native import GateTable, NativeQNN, library

SAVED_STATES_MAX_BYTES = 2 << 30
"""``backward="auto"`` saves the block inputs while they take at most this many bytes."""

NATIVE_MAX_WORK = 1 << 21
"""``native=None`` runs a real circuit on the CPU through the native kernel while batch × 2**Q ×
gates is at most this (measured crossover with the fused torch path, BENCHMARKS.md)."""


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
            Held in torch's default dtype; float64 values survive a later ``.double()`` exactly.
        real: ``None`` simulates in real arithmetic when every gate is real; ``False`` forces
            complex arithmetic; ``True`` requires a real circuit.
        backward: ``"saved"`` keeps every fused block's input state for the backward (fastest
            while they fit in memory), ``"adjoint"`` recomputes them from the output by the
            blocks' adjoints (O(1) states, so large circuits train in little memory), ``"auto"``
            saves them while they take at most :data:`SAVED_STATES_MAX_BYTES`.
        checkpoint_every: With the adjoint backward, also keep every ``k``-th block input to
            bound the float32 drift of the recomputed states (``None``: none).
        fuse_qubits: Width of the fusion window. Four suits shared (weight-only) blocks; a
            circuit whose blocks are nearly all per-sample builds cheaper 8x8 blocks with three.
        native: ``None`` evaluates small real circuits on the CPU gate by gate in one compiled
            call (:mod:`.native`) while batch × 2**Q × gates ≤ :data:`NATIVE_MAX_WORK`, else
            the fused torch path; ``False`` always takes the fused path; ``True`` the native one
            wherever it applies (real circuit and state, CPU, a C compiler).

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
        backward: str = "auto",
        checkpoint_every: int | None = None,
        fuse_qubits: int = FUSE_QUBITS,
        native: bool | None = None,
    ) -> None:
        super().__init__()
        n = circuit.num_qubits
        variables = [*input_params, *weight_params]
        if len(set(variables)) != len(variables):
            raise ValueError("input_params and weight_params must be distinct parameters")
        if backward not in ("auto", "saved", "adjoint"):
            raise ValueError(f"backward must be 'auto', 'saved' or 'adjoint', got {backward!r}")
        if checkpoint_every is not None and checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
        if fuse_qubits < 1:
            raise ValueError(f"fuse_qubits must be at least 1, got {fuse_qubits}")
        self.backward_mode, self.checkpoint_every = backward, checkpoint_every
        self.num_qubits, self.num_inputs = n, len(input_params)
        angles = Angles({p: i for i, p in enumerate(variables)}, len(input_params))
        gates = flatten(circuit, angles)
        complex_gate = next((g for g in gates if any(np.any(m.imag) for m in g.mats)), None)
        if real and complex_gate is not None:
            raise ValueError(f"real=True but the circuit has a complex gate: {complex_gate.label}")
        self.real = complex_gate is None if real is None else real

        self.weight = nn.Parameter(torch.empty(len(weight_params)))  # torch's default dtype
        self._initial_weights: torch.Tensor | None = None
        if initial_weights is None:
            nn.init.uniform_(self.weight, -1.0, 1.0)
        else:
            init = torch.as_tensor(initial_weights).detach()
            if init.shape != self.weight.shape:
                raise ValueError(
                    f"initial_weights must have shape {tuple(self.weight.shape)}, "
                    f"got {tuple(init.shape)}"
                )
            self.weight.data.copy_(init)
            if init.dtype == torch.float64:
                self._initial_weights = init.to("cpu", copy=True)

        if not angles.rows:  # parameter-free blocks still index one (unused) slot
            angles.add(0.0, 1.0, "")
        self.register_buffer("_angle_a", torch.tensor(np.array(angles.rows).T, dtype=torch.float64))
        self.register_buffer("_angle_b", torch.tensor(angles.consts, dtype=torch.float64))
        self.register_buffer(
            "_nonaffine_slots", torch.tensor([s for s, _ in angles.nonaffine], dtype=torch.long)
        )
        self._nonaffine = [f for _, f in angles.nonaffine]

        self.native = native
        flat = gates
        prefix, gates = split_prefix(gates, n)
        width = min(fuse_qubits, n)
        blocks = fuse(gates, n, width)
        plan = schedule(blocks, n)
        self._steps, refs, members = compile_ops(blocks, plan, n)
        self._refs = [(2 * g + per_sample, i) for g, per_sample, i in refs]  # (stack, index)
        self.groups = nn.ModuleList(
            BlockGroup(gates, [(blocks[b], plan[b][0]) for b in bs], n) for bs in members
        )
        frame = plan[0][0] if plan else 0
        self.prefix = Prefix(prefix, [(p + frame) % n for p in range(n)])
        self._memory: torch.Tensor | None = None
        self._lease: weakref.ref[Lease] | None = None
        frame = plan[-1][0] if plan else 0
        self.num_outputs = register_observables(self, observables, n, frame)
        # the native kernel simulates in the final frame's qubit order, the observables' order
        self._native = GateTable(flat, n, frame) if self.real and native is not False else None

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
        batch, dim = inputs.shape[0], 2**self.num_qubits
        if self._runs_native(batch, initial_state, device):
            return self._forward_native(inputs, initial_state)
        # One extra last row builds the weight-only (shared) block matrices, so that they exist
        # for an empty batch too; it repeats the first sample (any row gives the same values).
        rows = inputs.to(device, rdtype)
        rows = torch.cat([rows, rows[:1] if batch else rows.new_zeros(1, self.num_inputs)])
        angles = self.angles(torch.cat([rows, weight.expand(batch + 1, -1)], 1))
        cos, sin = torch.cos(angles), torch.sin(angles)
        mats = [group(cos, sin) for group in self.groups]
        cos, sin = cos[:batch], sin[:batch]
        state, steps = self.initial_state(cos, sin, initial_state)
        stacks = [m.to(state.dtype) for pair in mats for m in pair]  # (shared, per-sample)
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (state, *stacks))
        memory, size = None, len(self._refs) * batch * dim
        if grad and self._saves_states(size, state.dtype):
            memory = self._saved_memory(size, state.dtype, device)
        state = Evolve.apply(state, steps, self._refs, memory, self.checkpoint_every, *stacks)
        return expectations(self, state, rdtype).to(inputs.device)

    def _forward_native(
        self, inputs: torch.Tensor, initial_state: torch.Tensor | None
    ) -> torch.Tensor:
        """The forward through the native kernel (float64 inside), one autograd node."""
        shape = (inputs.shape[0], 2**self.num_qubits)
        if initial_state is not None and initial_state.shape != shape:
            raise ValueError(
                f"initial_state must have shape {shape}, got {tuple(initial_state.shape)}"
            )
        return NativeQNN.apply(inputs, self.weight, initial_state, self).to(inputs.device)

    def _runs_native(
        self, batch: int, initial_state: torch.Tensor | None, device: torch.device
    ) -> bool:
        """Whether this forward takes the native kernel (see ``native``)."""
        if self._native is None or self._nonaffine or device.type != "cpu" or self.native is False:
            return False
        if initial_state is not None and (initial_state.is_complex() or initial_state.is_cuda):
            return False
        work = batch * 2**self.num_qubits * self._native.count
        return (self.native or work <= NATIVE_MAX_WORK) and library() is not None

    def angles(self, variables: torch.Tensor) -> torch.Tensor:
        """Every gate angle slot ``(B, slots)`` from rows of ``[inputs, weights]``."""
        dtype = variables.dtype
        angles = torch.addmm(self._angle_b.to(dtype), variables, self._angle_a.to(dtype))
        if self._nonaffine:
            values = torch.stack([f(variables) for f in self._nonaffine], 1)
            angles = angles.index_add(1, self._nonaffine_slots, values)
        return angles

    def initial_state(
        self, cos: torch.Tensor, sin: torch.Tensor, given: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[tuple]]:
        """The state the op list starts from (after the prefix), and the op list to run on it.

        ``given`` ``(B, 2**num_qubits)`` replaces ``|0...0>``; the state is real when the circuit
        and ``given`` are.
        """
        rdtype, steps = cos.dtype, self._steps
        cdtype = torch.complex128 if rdtype == torch.float64 else torch.complex64
        if given is None:
            state = self.prefix.product_state(cos, sin, rdtype if self.real else cdtype)
            return state, steps[1:] if steps and steps[0][0] == "rotate" else steps  # 1st frame
        shape = (cos.shape[0], 2**self.num_qubits)
        if given.shape != shape:
            raise ValueError(f"initial_state must have shape {shape}, got {tuple(given.shape)}")
        sdtype = rdtype if self.real and not given.is_complex() else cdtype
        return self.prefix.apply(given.to(cos.device, sdtype), cos, sin), steps

    def _saves_states(self, size: int, dtype: torch.dtype) -> bool:
        """Whether this forward keeps its ``size`` block-input amplitudes (else: adjoint)."""
        if self.backward_mode != "auto":
            return self.backward_mode == "saved"
        return size * dtype.itemsize <= SAVED_STATES_MAX_BYTES

    def _saved_memory(
        self, size: int, dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, Lease] | None:
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
        lease = Lease()
        self._lease = weakref.ref(lease)
        return memory, lease

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> TorchQNN:
        """``.double()`` of untouched weights restores float64 ``initial_weights`` exactly.

        A float32 module holds them rounded; without this a float64 module built by
        ``.double()`` (Lightning's ``precision="64-true"`` included) would start from the
        rounded values, not the ones asked for.
        """
        exact, before = self._initial_weights, self.weight.detach()
        untouched = exact is not None and torch.equal(before.cpu(), exact.to(before.dtype))
        module = super()._apply(fn, recurse)
        if untouched and self.weight.dtype == torch.float64:
            with torch.no_grad():
                self.weight.copy_(exact)
        return module

    def __getstate__(self) -> dict:
        """Pickle/deepcopy without the reusable memory and its (unpicklable) weak lease."""
        return {**self.__dict__, "_memory": None, "_lease": None}
