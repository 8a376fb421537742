"""Kernels: the state's evolution through the op list, with a hand-written backward.

The state is a ``(batch, 2**Q)`` tensor. A block on the lowest bits is one
``(B * 2**(Q-w), 2**w) @ 2**w x 2**w`` GEMM, a cyclic rotation of the qubit order is one strided
copy, and the backward applies the adjoint GEMMs and inverse rotations instead of per-op
autograd nodes.
"""

from __future__ import annotations

import torch


class Lease:
    """Marks the reusable evolution memory as in use until its backward has run."""

    released = False


class Evolve(torch.autograd.Function):
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
        memory: tuple[torch.Tensor, Lease] | None,
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
                state = rotate(state, step[1], out)
            else:
                if keep:
                    inputs.append(state)
                state = apply_block(state, next(blocks), *step)
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
                grad = rotate(grad, (n - step[1]) % n, spare)
                continue
            i -= 1
            x, mat = inputs[i], mats[i]
            kind, _, width, per_sample = step
            if kind == "low":
                batch, dim, k = x.shape[0], x.shape[1], 1 << width
                gv = grad.view(batch, dim // k, k) if per_sample else grad.view(-1, k)
                xv = x.view(batch, dim // k, k) if per_sample else x.view(-1, k)
                if ctx.needs_input_grad[3 + i]:
                    grads[i] = gv.mT @ xv.conj()
                grad = torch.matmul(gv, mat.conj(), out=spare.view(gv.shape)).view(batch, dim)
            else:  # a distant pair is rare: differentiate its kernel with autograd
                with torch.enable_grad():
                    xs, ms = x.detach().requires_grad_(), mat.detach().requires_grad_()
                    grad, grads[i] = torch.autograd.grad(apply_block(xs, ms, *step), (xs, ms), grad)
        if ctx.lease is not None:
            ctx.lease.released = True
        return grad, None, None, *grads


def rotate(state: torch.Tensor, t: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Cyclically shift the qubit order: the ``t`` lowest qubit axes move to the top."""
    batch, dim = state.shape
    moved = state.view(batch, dim >> t, 1 << t).transpose(1, 2)
    if out is None:
        return moved.reshape(batch, dim)
    return out.view(batch, 1 << t, dim >> t).copy_(moved).view(batch, dim)


def apply_block(
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
            return torch.bmm(state.view(batch, dim // k, k), mat.mT).view(batch, dim)
        return (state.view(-1, k) @ mat.T).view(batch, dim)
    lo, hi = pos  # two distant qubits: bring them together, apply, move back
    view = state.view(batch, dim >> (hi + 1), 2, 1 << (hi - lo - 1), 2, 1 << lo)
    moved = view.transpose(2, 3).reshape(batch, dim >> (lo + 2), 4, 1 << lo)
    out = torch.matmul(mat[:, None] if per_sample else mat, moved)
    shape = (batch, view.shape[1], view.shape[3], 2, 2, 1 << lo)
    return out.view(shape).transpose(2, 3).reshape(batch, dim)
