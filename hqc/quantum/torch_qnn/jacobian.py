"""Per-sample Jacobians of a :class:`~hqc.quantum.torch_qnn.TorchQNN`, from its shared blocks.

qiskit-machine-learning's ``NeuralNetwork`` contract asks for a weight Jacobian per sample, but
autograd sums over the batch wherever the weights are shared: in the weight-only block matrices,
and in the ``before``/``after`` products of the per-sample blocks. So the evolution's backward
keeps those cotangents per sample (:func:`~hqc.quantum.torch_qnn.kernels.evolve_backward` with
``per_sample``), and each product's cotangent contracts with the product's derivatives by its
factors' angles (built once, independent of the batch). Everything sample-local (the prefix, the
input-dependent layers, the angles' dependence on inputs and weights) goes through autograd,
where samples do not mix. The cost is one forward and, per observable, one backward of the
shared compilation, instead of building every block per sample.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hqc.quantum.torch_qnn.kernels import evolve, evolve_backward
from hqc.quantum.torch_qnn.measure import expectations

if TYPE_CHECKING:
    from hqc.quantum.torch_qnn.qnn import TorchQNN


def jacobians(qnn: TorchQNN, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expectations ``(B, J)`` and their Jacobians ``(B, J, num_inputs + num_weights)``.

    Columns are the inputs, then the weights, for every sample separately.
    """
    weight = qnn.weight.detach()
    batch = inputs.shape[0]
    rows = torch.cat([inputs.to(weight.device, weight.dtype), weight.expand(batch, -1)], 1)
    if not batch:
        return rows.new_zeros(0, qnn.num_outputs), rows.new_zeros(0, qnn.num_outputs, rows.shape[1])
    with torch.enable_grad():
        rows.requires_grad_()
        angles = qnn.angles(rows)  # every row holds the same weight-only angles
        cos, sin = torch.cos(angles), torch.sin(angles)
        state, steps = qnn.initial_state(cos, sin)
        row = cos[:1].detach(), sin[:1].detach()
        shared = [g.products(*row) for g in qnn.groups]
        layers = [g.layers(cos, sin) for g in qnn.groups]
        layered = [
            g.layered(p, k).to(state.dtype)
            for g, p, k in zip(qnn.groups, shared, layers, strict=True)
        ]
    stacks = [
        m.detach().to(state.dtype)
        for p, g, lay in zip(shared, qnn.groups, layered, strict=True)
        for m in (p[: g.n_shared], lay)
    ]
    with torch.no_grad():
        final, kept, adjoint = _forward(qnn, state.detach(), steps, stacks)
    with torch.enable_grad():
        final = final.detach().requires_grad_()  # kept[-1] (adjoint) stays a plain tensor
        out = expectations(qnn, final, weight.dtype)
        g_finals = [
            torch.autograd.grad(out[:, j].sum(), final, retain_graph=True)[0]
            for j in range(qnn.num_outputs)
        ]
    derivatives = [g.product_derivatives(*row) for g in qnn.groups]
    columns = []
    for g_final in g_finals:
        with torch.no_grad():
            g_state, g_stacks = evolve_backward(
                g_final,
                steps,
                qnn._refs,
                stacks,
                kept,
                adjoint=adjoint,
                every=qnn.checkpoint_every,
                wanted=[True] * len(stacks),
                per_sample=True,
            )
        g_angles = angles.new_zeros(angles.shape)
        for group, prod, kron, d, g_shared, g_layered in zip(
            qnn.groups, shared, layers, derivatives, g_stacks[::2], g_stacks[1::2], strict=True
        ):
            n_s, n_l = group.n_shared, group.n_layered
            parts = [(g_shared, 0, n_s)] if n_s else []
            if n_l:
                g_before, g_after = _before_after(group, prod, kron, g_layered)
                parts += [(g_before, n_s, n_s + n_l), (g_after, n_s + n_l, n_s + 2 * n_l)]
            for grad, lo, hi in parts:
                part = tuple(t[lo:hi] for t in d)
                _angle_cotangents(grad, part, row[0][0], row[1][0], g_angles)
        pairs = [(state, g_state), (angles, g_angles)]
        pairs += list(zip(layered, g_stacks[1::2], strict=True))
        with torch.enable_grad():
            tensors, cotangents = zip(*[p for p in pairs if p[0].requires_grad], strict=True)
            (column,) = torch.autograd.grad(tensors, rows, cotangents, retain_graph=True)
        columns.append(column)
    return out.detach(), torch.stack(columns, 1)


def _forward(
    qnn: TorchQNN, state: torch.Tensor, steps: list[tuple], stacks: list[torch.Tensor]
) -> tuple[torch.Tensor, list[torch.Tensor], bool]:
    """The final state, what the backward reads, and whether that is the adjoint method's.

    As the module's own backward: the block inputs while they fit, else checkpoints and the end.
    """
    size = len(qnn._refs) * state.numel()
    if qnn._saves_states(size, state.dtype):
        leased = qnn._saved_memory(size, state.dtype, state.device)
        if leased is None:  # an earlier graph of the module still holds it
            memory = torch.empty(size, dtype=state.dtype, device=state.device)
        else:
            memory, lease = leased
            lease.released = True  # read only within jacobians(), which holds no graph after
        return *evolve(state, steps, qnn._refs, stacks, memory), False
    final, kept = evolve(state, steps, qnn._refs, stacks, every=qnn.checkpoint_every)
    return final, [*kept, final], True


def _before_after(
    group: torch.nn.Module, prod: torch.Tensor, kron: torch.Tensor, grad: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample cotangents of the ``before`` and ``after`` of ``after @ layer @ before``."""
    before, after = group.split(prod)
    kron = kron.to(grad.dtype)
    before, after = before.to(grad.dtype), after.to(grad.dtype)
    g_before = (after.unsqueeze(1) @ kron).mH @ grad
    g_after = grad @ (kron @ before.unsqueeze(1)).mH
    return g_before, g_after


def _angle_cotangents(
    grad: torch.Tensor,
    derivatives: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    cos: torch.Tensor,
    sin: torch.Tensor,
    out: torch.Tensor,
) -> None:
    """Add the per-sample cotangents ``(P, B, K, K)`` of a group's products to angle slots."""
    d_cos, d_sin, slots = derivatives
    count, batch = grad.shape[:2]
    grad = grad.reshape(count, batch, -1)
    if d_cos.is_complex():  # Re <grad, d>: torch's complex gradients are conjugate Wirtinger
        grad = torch.cat([grad.real, grad.imag], 2)
        d_cos = torch.cat([d_cos.real, d_cos.imag], 1)
        d_sin = torch.cat([d_sin.real, d_sin.imag], 1)
    elif grad.is_complex():  # real products in a complex evolution
        grad = grad.real
    g_cos, g_sin = torch.bmm(grad, d_cos), torch.bmm(grad, d_sin)  # (P, B, L)
    per_factor = g_sin * cos[slots].unsqueeze(1) - g_cos * sin[slots].unsqueeze(1)
    out.index_add_(1, slots.flatten(), per_factor.transpose(0, 1).reshape(batch, -1))
