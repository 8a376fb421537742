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

from collections.abc import Sequence

import torch


class Lease:
    """Marks the reusable evolution memory as in use until its backward has run."""

    released = False


class _Views:
    """Views of the few base tensors of one evolution pass, each made once.

    A view is a dispatcher call (about a microsecond); small circuits are bound by that per-op
    cost, and every step of a pass reads and writes the same two or three bases.
    """

    def __init__(self) -> None:
        # id(base) -> (base, {(kind, arg): view}); holding base keeps its id unique for the pass
        self._cache: dict[int, tuple[torch.Tensor, dict[tuple[str, int], torch.Tensor]]] = {}

    def __call__(self, base: torch.Tensor, kind: str, arg: int) -> torch.Tensor:
        """``base`` as ``kind``: "rows" ``(-1, 2**arg)``, "sample" ``(B, -1, 2**arg)`` (and their
        "_T" transposes), "rot_src"/"rot_dst" the two sides of a rotation by ``arg``, "first"
        and "half" its rows before and from ``arg``."""
        entry = self._cache.get(id(base))
        if entry is None:
            entry = self._cache[id(base)] = (base, {})
        view = entry[1].get((kind, arg))
        if view is None:
            rows, dim = base.shape
            if kind == "first":
                view = base[:arg]
            elif kind == "half":
                view = base[arg:]
            elif kind.startswith("rows"):
                view = base.view(-1, 1 << arg)
            elif kind.startswith("sample"):
                view = base.view(rows, dim >> arg, 1 << arg)
            elif kind == "rot_src":
                view = base.view(rows, dim >> arg, 1 << arg).transpose(1, 2)
            else:
                view = base.view(rows, 1 << arg, dim >> arg)
            if kind.endswith("_T"):
                view = view.mT
            entry[1][(kind, arg)] = view
        return view


class Evolve(torch.autograd.Function):
    """Runs the op list on a state; the hand-written backward avoids per-op autograd overhead.

    ``steps`` are ``("rotate", t)`` or ``(kernel, position, width, per_sample)``; the matrix of
    the ``i``-th kernel step is ``stacks[t][j]`` for ``(t, j) = refs[i]``. ``memory`` (leased)
    selects the saved-state backward and receives the block inputs; without it a gradient is
    taken by the adjoint method, with a checkpoint of every ``every``-th block input (``None``:
    no checkpoints).
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        state: torch.Tensor,
        steps: list[tuple],
        refs: list[tuple[int, int]],
        memory: tuple[torch.Tensor, Lease] | None,
        every: int | None,
        *stacks: torch.Tensor,
    ) -> torch.Tensor:
        """Apply ``steps`` to ``state``, keeping what the chosen backward needs."""
        keep = any(ctx.needs_input_grad)
        saved = keep and memory is not None
        state, inputs = evolve(
            state, steps, refs, stacks, memory[0] if saved else None, every if keep else None
        )
        ctx.steps, ctx.refs, ctx.every, ctx.n_stacks = steps, refs, every, len(stacks)
        ctx.adjoint = keep and not saved
        ctx.lease = memory[1] if saved else None
        if keep:
            ctx.save_for_backward(*inputs, *((state,) if ctx.adjoint else ()), *stacks)
        return state

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        """Gradients of the initial state and of every stack of block matrices."""
        saved, n_stacks = ctx.saved_tensors, ctx.n_stacks
        stacks, kept = saved[len(saved) - n_stacks :], saved[: len(saved) - n_stacks]
        g, grads = evolve_backward(
            grad,
            ctx.steps,
            ctx.refs,
            stacks,
            kept,
            ctx.adjoint,
            ctx.every,
            ctx.needs_input_grad[5:],
        )
        if ctx.lease is not None:
            ctx.lease.released = True
        return g if ctx.needs_input_grad[0] else None, None, None, None, None, *grads


def evolve(
    state: torch.Tensor,
    steps: list[tuple],
    refs: list[tuple[int, int]],
    stacks: Sequence[torch.Tensor],
    memory: torch.Tensor | None = None,
    every: int | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The final state, and the block inputs a backward needs.

    With ``memory`` (saved states) every block's input is written into it and returned; else
    a copy of every ``every``-th one (the adjoint method's checkpoints; ``None``: none).
    """
    state = state.contiguous()
    batch, dim = state.shape
    transposed = [s.mT.unbind(0) for s in stacks]
    blocks = [transposed[t][j] for t, j in refs]
    saved = memory is not None
    slots = ()
    if saved:  # one slot per block input
        slots = memory[: len(refs) * state.numel()].view(len(refs), batch, dim).unbind(0)
    buffers = (torch.empty_like(state), torch.empty_like(state))
    view = _Views()
    inputs, b = [], 0
    for s, step in enumerate(steps):
        block = step[0] != "rotate"
        if block and (saved or (every and b % every == 0)):
            inputs.append(state if saved else state.clone())
        if saved and s + 1 < len(steps) and steps[s + 1][0] != "rotate":
            out = slots[b + block]  # the next block's input
        else:
            out = buffers[state.data_ptr() == buffers[0].data_ptr()]
        if not block:
            view(out, "rot_dst", step[1]).copy_(view(state, "rot_src", step[1]))
        elif step[0] == "low":
            kind = "sample" if step[3] else "rows"
            mm = torch.bmm if step[3] else torch.mm
            mm(view(state, kind, step[2]), blocks[b], out=view(out, kind, step[2]))
            b += 1
        else:
            t, j = refs[b]
            apply_block(state, stacks[t][j], *step, out=out)
            b += 1
        state = out
    return state, inputs


def evolve_backward(
    grad: torch.Tensor,
    steps: list[tuple],
    refs: list[tuple[int, int]],
    stacks: Sequence[torch.Tensor],
    kept: Sequence[torch.Tensor],
    adjoint: bool,
    every: int | None,
    wanted: Sequence[bool],
    per_sample: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """The gradient of the initial state, and of every stack in ``wanted``.

    ``kept`` is what :func:`evolve` returned (for ``adjoint``: followed by the final state); it is
    only read, so one forward serves several backward passes. ``per_sample`` gives shared stacks
    ``(S, K, K)`` a gradient per sample, ``(S, B, K, K)`` (the contributions autograd would sum),
    as per-sample stacks ``(L, B, K, K)`` have anyway.
    """
    n_blocks = len(refs)
    batch, dim = grad.shape
    grads = [
        (s.new_empty(s.shape[0], batch, *s.shape[1:]) if per_sample and s.dim() == 3 else
         torch.empty_like(s)) if w else None
        for s, w in zip(stacks, wanted, strict=True)
    ]  # fmt: skip
    targets = [g.unbind(0) if g is not None else None for g in grads]
    n = dim.bit_length() - 1
    checkpoints: dict[int, torch.Tensor] = {}
    if adjoint:  # rows [:batch] walk the state back, rows [batch:] the gradient
        cur = torch.cat([kept[-1], grad])
        buffers = (cur, torch.empty_like(cur))
        if every:
            checkpoints = dict(zip(range(0, n_blocks, every), kept[:-1], strict=True))
    else:
        cur = grad.contiguous()
        buffers = (torch.empty_like(cur), torch.empty_like(cur))
    # the adjoint of a low block right-multiplies by conj(M); per-sample matrices repeat
    # for the stacked (state, gradient) rows of the adjoint method
    adjoints = [s.conj() if s.is_complex() else s for s in stacks]
    adjoints = [
        (a.repeat(1, 2, 1, 1) if adjoint and a.dim() == 4 else a).unbind(0) for a in adjoints
    ]
    view = _Views()
    i = n_blocks
    for step in reversed(steps):
        spare = buffers[cur.data_ptr() == buffers[0].data_ptr()]
        if step[0] == "rotate":
            t = (n - step[1]) % n
            view(spare, "rot_dst", t).copy_(view(cur, "rot_src", t))
            cur = spare
            continue
        i -= 1
        t, j = refs[i]
        g = view(cur, "half", batch) if adjoint else cur
        target = targets[t][j] if targets[t] is not None else None
        if step[0] == "low":
            width, per_sample_step = step[2], step[3]
            kind = "sample" if per_sample_step else "rows"
            mm = torch.bmm if per_sample_step else torch.mm
            mm(view(cur, kind, width), adjoints[t][j], out=view(spare, kind, width))
            new = spare
            x = view(new, "first", batch) if adjoint else kept[i]
            if adjoint and i in checkpoints:
                x.copy_(checkpoints[i])
            if target is not None:
                kind = "sample" if per_sample else kind
                xv = view(x, kind, width)
                xv = xv.conj() if xv.is_complex() else xv
                (torch.bmm if per_sample else mm)(view(g, kind + "_T", width), xv, out=target)
        else:  # a distant pair is rare: differentiate its kernel with autograd
            mat = stacks[t][j]
            x = checkpoints.get(i) if adjoint else kept[i]
            if x is None:
                x = apply_block(cur[:batch], mat.conj().mT, *step)
            with torch.enable_grad():
                xs, ms = x.detach().requires_grad_(), mat.detach()
                if per_sample and not step[3]:  # one copy of the shared matrix per sample
                    ms = ms.expand(batch, *ms.shape).contiguous()
                ms.requires_grad_()
                out = apply_block(xs, ms, *step[:3], step[3] or per_sample)
                g_in, g_mat = torch.autograd.grad(out, (xs, ms), g)
            if target is not None:
                target.copy_(g_mat)
            new = torch.cat([x, g_in], out=spare) if adjoint else g_in
        cur = new
    return cur[batch:] if adjoint else cur, grads


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
