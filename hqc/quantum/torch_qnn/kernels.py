"""Kernels: the state's evolution through the op list, with a hand-written backward.

The state is a ``(batch, 2**Q)`` tensor. A block on the lowest bits is one
``(B * 2**(Q-w), 2**w) @ 2**w x 2**w`` GEMM, a cyclic rotation of the qubit order is one strided
copy, and the backward applies the adjoint GEMMs and inverse rotations instead of per-op
autograd nodes. No pass allocates: every pass writes into one of two ping-pong buffers (or into
the saved-state memory), since a fresh ``2**Q`` tensor per pass is page-faulted in anew once it
is larger than the allocator's cache.

Two backward methods, chosen per forward by :class:`~hqc.quantum.torch_qnn.TorchQNN`:

* **saved states**: the forward writes every block's input into a leased slab (one state per
  block), and the backward reads them back;
* **adjoint**: blocks are unitary, so the backward recomputes each block's input from its output
  by applying the block's adjoint, walking the state back next to the gradient (both in one
  ``(2 * batch, 2**Q)`` tensor, so one GEMM per block serves both). It keeps O(1) states; an
  optional checkpoint every ``k`` blocks resets the walked-back state against float32 drift.
"""

from __future__ import annotations

import torch


class Lease:
    """Marks the reusable evolution memory as in use until its backward has run."""

    released = False


class Evolve(torch.autograd.Function):
    """Runs the op list on a state; the hand-written backward avoids per-op autograd overhead.

    ``steps`` are ``("rotate", t)`` or ``(kernel, position, width, per_sample)``, one block matrix
    per kernel step. ``memory`` (leased) selects the saved-state backward and receives the block
    inputs; without it a gradient is taken by the adjoint method, with a checkpoint of every
    ``every``-th block input (``None``: no checkpoints).
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        state: torch.Tensor,
        steps: list[tuple],
        memory: tuple[torch.Tensor, Lease] | None,
        every: int | None,
        *mats: torch.Tensor,
    ) -> torch.Tensor:
        """Apply ``steps`` to ``state``, keeping what the chosen backward needs."""
        keep = any(ctx.needs_input_grad)
        saved = keep and memory is not None
        state = state.contiguous()
        numel, blocks = state.numel(), iter(mats)
        buffers = (torch.empty_like(state), torch.empty_like(state))
        inputs, b = [], 0  # saved: every block input; adjoint: the checkpoints
        for s, step in enumerate(steps):
            block = step[0] != "rotate"
            if block and (saved or (keep and every and b % every == 0)):
                inputs.append(state if saved else state.clone())
            if saved and s + 1 < len(steps) and steps[s + 1][0] != "rotate":
                out = memory[0][(b + block) * numel :][:numel].view_as(state)  # next block's input
            else:
                out = buffers[state.data_ptr() == buffers[0].data_ptr()]
            if block:
                state, b = apply_block(state, next(blocks), *step, out=out), b + 1
            else:
                state = rotate(state, step[1], out)
        ctx.steps, ctx.every, ctx.n_mats = steps, every, len(mats)
        ctx.adjoint = keep and not saved
        ctx.lease = memory[1] if saved else None
        if keep:
            ctx.save_for_backward(*inputs, *((state,) if ctx.adjoint else ()), *mats)
        return state

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        """Gradients of the initial state and of every block matrix."""
        saved, adjoint = ctx.saved_tensors, ctx.adjoint
        n_blocks = ctx.n_mats
        mats, kept = saved[len(saved) - n_blocks :], saved[: len(saved) - n_blocks]
        grads: list[torch.Tensor | None] = [None] * n_blocks
        batch, dim = grad.shape
        n = dim.bit_length() - 1
        checkpoints: dict[int, torch.Tensor] = {}
        if adjoint:  # rows [:batch] walk the state back, rows [batch:] the gradient
            cur = torch.cat([kept[-1], grad])
            buffers = (cur, torch.empty_like(cur))
            if ctx.every:
                checkpoints = dict(zip(range(0, n_blocks, ctx.every), kept[:-1], strict=True))
        else:
            cur = grad.contiguous()
            buffers = (torch.empty_like(cur), torch.empty_like(cur))
        i = n_blocks
        for step in reversed(ctx.steps):
            spare = buffers[cur.data_ptr() == buffers[0].data_ptr()]
            if step[0] == "rotate":
                cur = rotate(cur, (n - step[1]) % n, spare)
                continue
            i -= 1
            mat, g = mats[i], cur[batch:] if adjoint else cur
            if step[0] == "low":
                new = _adjoint_low(cur, mat, step[2], step[3], spare, 1 + adjoint)
                if adjoint and i in checkpoints:
                    new[:batch].copy_(checkpoints[i])
                x = new[:batch] if adjoint else kept[i]
                if ctx.needs_input_grad[4 + i]:
                    grads[i] = _matrix_grad(g, x, step[2], step[3])
            else:  # a distant pair is rare: differentiate its kernel with autograd
                x = checkpoints.get(i) if adjoint else kept[i]
                if x is None:
                    x = apply_block(cur[:batch], mat.conj().mT, *step)
                with torch.enable_grad():
                    xs, ms = x.detach().requires_grad_(), mat.detach().requires_grad_()
                    g_in, grads[i] = torch.autograd.grad(apply_block(xs, ms, *step), (xs, ms), g)
                new = torch.cat([x, g_in], out=spare) if adjoint else g_in
            cur = new
        if ctx.lease is not None:
            ctx.lease.released = True
        g = cur[batch:] if adjoint else cur
        return g if ctx.needs_input_grad[0] else None, None, None, None, *grads


def _adjoint_low(
    rows: torch.Tensor,
    mat: torch.Tensor,
    width: int,
    per_sample: bool,
    out: torch.Tensor,
    reps: int,
) -> torch.Tensor:
    """``rows`` through the adjoint of a low-bit block (``x @ conj(M)`` per ``2**width`` group).

    ``rows`` stacks ``reps`` batches (per-sample matrices ``(B, K, K)`` apply to each).
    """
    n_rows, dim = rows.shape
    k = 1 << width
    if per_sample:
        m = mat.conj() if reps == 1 else mat.conj().repeat(reps, 1, 1)
        shape = (n_rows, dim // k, k)
        return torch.bmm(rows.view(shape), m, out=out.view(shape)).view(n_rows, dim)
    return torch.matmul(rows.view(-1, k), mat.conj(), out=out.view(-1, k)).view(n_rows, dim)


def _matrix_grad(g: torch.Tensor, x: torch.Tensor, width: int, per_sample: bool) -> torch.Tensor:
    """Gradient of a low-bit block's matrix from its output gradient ``g`` and input ``x``."""
    k = 1 << width
    if per_sample:
        shape = (x.shape[0], x.shape[1] // k, k)
        return g.reshape(shape).mT @ x.reshape(shape).conj()
    return g.reshape(-1, k).mT @ x.reshape(-1, k).conj()


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
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply a ``2**width`` block on the lowest bits, or a 2-qubit "split" block on bits ``pos``.

    The result goes into ``out`` when given (it must not overlap ``state``).
    """
    batch, dim = state.shape
    if kind == "low":
        k = 1 << width
        if per_sample:
            shape = (batch, dim // k, k)
            target = None if out is None else out.view(shape)
            return torch.bmm(state.view(shape), mat.mT, out=target).view(batch, dim)
        target = None if out is None else out.view(-1, k)
        return torch.matmul(state.view(-1, k), mat.T, out=target).view(batch, dim)
    lo, hi = pos  # two distant qubits: bring them together, apply, move back
    view = state.view(batch, dim >> (hi + 1), 2, 1 << (hi - lo - 1), 2, 1 << lo)
    moved = view.transpose(2, 3).reshape(batch, dim >> (lo + 2), 4, 1 << lo)
    result = torch.matmul(mat[:, None] if per_sample else mat, moved)
    shape = (batch, view.shape[1], view.shape[3], 2, 2, 1 << lo)
    result = result.view(shape).transpose(2, 3)
    if out is None:
        return result.reshape(batch, dim)
    return out.view(view.shape).copy_(result).view(batch, dim)
