"""Fusion and plan: gates grouped into blocks on 4-qubit windows, and the qubit-order schedule.

Each qubit's leading 1-qubit gates form a product-state prefix; the other gates are fused
greedily into blocks on windows of cyclically adjacent qubits, and a dynamic programme over the
cyclic rotations of the qubit order places every window on the lowest bits, where its block is
one GEMM. The result is the evolution's op list (:func:`compile_ops`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hqc.quantum.torch_qnn.gates import FlatGate

FUSE_QUBITS = 4
_MAX_FACTORS = 16  # rotations per block: bounds the identity padding of the factor product
# Relative forward+backward cost of applying a window block at the low bits (one GEMM), a
# distant qubit pair (bits moved together, slow when the lower one is below bit 4), and a cyclic
# rotation of the qubit order (measured at 14 qubits, batch 64); used to schedule the rotations.
_COST = {"low": 1.0, "split": 4.0, "split_narrow": 9.0, "rotate": 0.5}


@dataclass
class Block:
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


def split_prefix(gates: list[FlatGate], n: int) -> tuple[list[list[FlatGate]], list[FlatGate]]:
    """Each qubit's leading 1-qubit gates (before its first multi-qubit gate), and the rest.

    Applied to ``|0...0>`` the leading gates give a product state, which is cheap to build.
    """
    prefix: list[list[FlatGate]] = [[] for _ in range(n)]
    rest, entangled = [], set()
    for g in gates:
        if len(g.qubits) == 1 and g.qubits[0] not in entangled:
            prefix[g.qubits[0]].append(g)
        else:
            entangled.update(g.qubits)
            rest.append(g)
    return prefix, rest


def fuse(gates: list[FlatGate], n: int, width: int) -> list[Block]:
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


def _scan(
    gates: list[FlatGate], remaining: list[int], window: tuple[int, ...], split: bool
) -> Block:
    """The block on ``window`` formed by the gates of ``remaining`` that can move into it.

    A gate joins when it lies in the window and shares no qubit with a skipped gate (so it
    commutes past them). Qubit states keep ``after @ layer @ before`` equal to the gate order:
    weight-only gates go to ``before`` until an input-dependent gate has touched one of their
    qubits, and input-dependent gates join the layer only on qubits not yet touched by ``after``.
    """
    block = Block(window, split)
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


def _kernel(block: Block, frame: int, n: int) -> tuple[float, str, tuple[int, ...]]:
    """Cost, kernel and physical bit position(s) of ``block`` under rotation ``frame``.

    A window is applied only once rotated to the low bits, where its GEMM is efficient.
    """
    if block.split:
        pos = tuple(sorted((q - frame) % n for q in block.window))
        return _COST["split" if pos[0] >= 4 else "split_narrow"], "split", pos
    if block.window[0] == frame:
        return _COST["low"], "low", (0,)
    return math.inf, "", ()


def schedule(blocks: list[Block], n: int) -> list[tuple[int, str, tuple[int, ...]]]:
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


def compile_ops(
    blocks: list[Block], plan: list[tuple[int, str, tuple[int, ...]]], n: int
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
