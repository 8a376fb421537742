"""Block matrices: every fused block's matrix (and the prefix's product state) from the angles.

A block matrix is ``S_after @ L @ S_before``: ``S`` are products of weight-only gates, built for
all blocks of a window width at once by a log-depth batched product, and ``L`` is a per-sample
Kronecker product of the block's input-dependent 1-qubit gates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from hqc.quantum.torch_qnn.fusion import Block
from hqc.quantum.torch_qnn.gates import FlatGate


def _embed(mat: np.ndarray, qubits: tuple[int, ...], local: tuple[int, ...]) -> np.ndarray:
    """``mat`` on ``qubits`` as a matrix on the block's ``local`` qubits (identity elsewhere)."""
    bits = [local.index(q) for q in qubits]
    idx = np.arange(1 << len(local))
    sub = sum(((idx >> b) & 1) << j for j, b in enumerate(bits))
    rest = idx & ~sum(1 << b for b in bits)
    return mat[np.ix_(sub, sub)] * (rest[:, None] == rest[None, :])


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
    c, s = cos.index_select(1, slot), sin.index_select(1, slot)  # backward: one index_add
    c, s = c.T.unsqueeze(-1).to(a.dtype), s.T.unsqueeze(-1).to(a.dtype)  # (F, B, 1)
    return torch.addcmul(torch.addcmul(a[:, :1], c, a[:, 1:2]), s, a[:, 2:])


def _bit_reversed(length: int) -> list[int]:
    """Factor positions ``0..length-1`` (a power of two) in bit-reversed order.

    Stored so, the two contiguous halves of a product's factor list hold neighbours
    ``(2i, 2i + 1)`` at the same offset, and so at every level of the halving product tree:
    each level is one ``chunk`` and one batched matmul (no strided slices to scatter back).
    """
    bits = length.bit_length() - 1
    return [int(f"{r:0{bits}b}"[::-1], 2) if bits else 0 for r in range(length)]


def _padded(gates: Sequence[FlatGate], depth: int) -> list[tuple[int, Sequence[np.ndarray]]]:
    """1-qubit gates as factors (fixed ones with zero ``Ac, As``), identity-padded to ``depth``."""
    zero = np.zeros((2, 2))
    factors = [
        (g.slot, g.mats) if g.slot is not None else (0, (g.mats[0], zero, zero)) for g in gates
    ]
    return factors + [(0, (np.eye(2), zero, zero))] * (depth - len(factors))


class Prefix(nn.Module):
    """The leading 1-qubit gates of every qubit: a product state, or a product operator."""

    def __init__(self, prefix: list[list[FlatGate]], order: list[int]) -> None:
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
            state = (columns[q][:, :, None] * state[:, None, :]).flatten(1)
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


class BlockGroup(nn.Module):
    """Builds the matrices of all blocks of one window width in a few batched ops.

    Weight-only products (a shared block, or ``before``/``after`` of a per-sample block) are lists
    of factors ``A0 + cos(φ) Ac + sin(φ) As`` in the block's local basis, padded with identities to
    a power of two and multiplied as a log-depth tree. A per-sample layer is the Kronecker product
    over the window qubits of each qubit's 2x2 input-dependent gates; the batch is folded into the
    matrix dimensions so that ``after @ layer @ before`` is two GEMMs.
    """

    def __init__(self, gates: list[FlatGate], blocks: list[tuple[Block, int]], n: int) -> None:
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
        identity = (0, [eye, zero, zero])
        factors = [  # position-major, so each half of every tree level is contiguous
            factors[m[r]] if r < len(m) else identity
            for r in _bit_reversed(self.length)
            for m in members
        ]

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

    def forward(self, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked matrices of the shared blocks ``(S, K, K)`` and per-sample ``(L, B, K, K)``.

        Blocks are in block order. Stacks (not one tensor per block) keep the autograd graph
        small: one node per group instead of a select and a gradient sum per block.
        ``cos`` and ``sin`` have ``B + 1`` rows; the shared blocks are built from the last one.
        """
        prod = self.products(cos[-1:], sin[-1:])
        return prod[: self.n_shared], self.layered(prod, self.layers(cos[:-1], sin[:-1]))

    def products(self, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """The weight-only products from one row: shared blocks, befores, afters ``(P, K, K)``."""
        k = 1 << self.width
        factors = _factors(self, "_a", self.complex, cos, sin)
        prod = factors.view(self.length, -1, k, k)
        while prod.shape[0] > 1:  # bit-reversed storage: the halves pair consecutive factors
            earlier, later = prod.chunk(2, 0)
            half = earlier.shape[0]
            prod = torch.bmm(later.flatten(0, 1), earlier.flatten(0, 1)).view(half, -1, k, k)
        return prod[0]

    def layers(self, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """Each per-sample block's input-dependent layer, ``(L, B, K, K)``."""
        batch, n_l = cos.shape[0], self.n_layered
        if not n_l:
            return cos.new_empty(0, batch, 1 << self.width, 1 << self.width)
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
        return kron

    def layered(self, prod: torch.Tensor, kron: torch.Tensor) -> torch.Tensor:
        """Per-sample block matrices ``after @ layer @ before``, ``(L, B, K, K)``: two GEMMs."""
        n_l, batch = kron.shape[:2]
        if not n_l:
            return kron.to(prod.dtype)
        k = 1 << self.width
        before, after = self.split(prod)
        left = torch.bmm(after, kron.transpose(1, 2).reshape(n_l, k, batch * k))
        left = left.view(n_l, k, batch, k).transpose(1, 2).reshape(n_l, batch * k, k)
        return torch.bmm(left, before).view(n_l, batch, k, k)

    def split(self, prod: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-sample blocks' ``before`` and ``after`` products in ``prod``."""
        n_s, n_l = self.n_shared, self.n_layered
        return prod[n_s : n_s + n_l], prod[n_s + n_l :]

    def product_derivatives(
        self, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Derivatives of every product by its factors' ``cos φ`` and ``sin φ``, from one row.

        A product is ``F_{L-1} … F_0``; its derivative by factor ``r``'s ``cos φ`` is
        ``(F_{L-1} … F_{r+1}) Ac_r (F_{r-1} … F_0)``. Returns those ``(P, K², L)`` for ``cos``
        and for ``sin``, and each factor's angle slot ``(P, L)``: a per-sample cotangent of the
        products then contracts with them in one GEMM, however large the batch.
        """
        k, length = 1 << self.width, self.length
        order = _bit_reversed(length)  # storage index of each position (an involution)
        factors = _factors(self, "_a", self.complex, cos, sin).view(length, -1, k, k)[order]
        count = factors.shape[1]
        a = torch.complex(self._a_re, self._a_im) if self.complex else self._a_re
        a = a.to(factors.dtype).view(length, count, 3, k, k)[order]
        eye = torch.eye(k, dtype=factors.dtype, device=factors.device).expand(count, k, k)
        right, left = [eye], [eye]
        for r in range(length - 1):
            right.append(torch.bmm(factors[r], right[-1]))
            left.append(torch.bmm(left[-1], factors[length - 1 - r]))
        outer = torch.stack(left[::-1]).unsqueeze(2)  # (L, P, 1, K, K)
        inner = torch.stack(right).unsqueeze(2)
        d = (outer @ a[:, :, 1:] @ inner).permute(2, 1, 3, 4, 0).reshape(2, count, k * k, length)
        slots = self._a_slot.view(length, count)[order].T
        return d[0], d[1], slots
