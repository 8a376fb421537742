"""What one state pass of hqc's simulator costs at large Q, batch 1, next to a copy.

One command (bench venv)::

    python tools/bench_passes.py

hqc's forward is a list of passes over the ``(1, 2^Q)`` state (see tools/bench_bandwidth.py):
fused 4-qubit blocks applied as one GEMM on the lowest qubits (``state.view(-1, 16) @ M.T``)
and cyclic rotations of the qubit order (``view(1, 2^(Q-t), 2^t).transpose(1, 2).reshape``).
This times those two primitives in plain torch, as hqc writes them, for the rotation amounts
the paper circuit uses, next to ``copy_`` into an existing buffer and ``clone()`` (which also
pays the page faults of a fresh allocation). Results: ``tools/results/passes.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import (
    RESULTS_DIR,
    ResultStore,
    default_threads,
    fmt_time,
    machine_info,
    md_table,
    replace_block,
    set_threads,
    time_calls,
    wait_for_quiet,
)


def measure(num_qubits: int, cap: float) -> dict[str, float]:
    """Median seconds of each primitive on a float32 ``(1, 2^Q)`` state."""
    import torch

    state = torch.randn(1, 2**num_qubits)
    target = torch.empty_like(state)
    block = torch.randn(16, 16)
    dim = state.shape[1]
    out: dict[str, float] = {}

    def median(fn: Callable[[], Any]) -> float:
        return time_calls(fn, cap, 15, 5).median_s

    out["copy_"] = median(lambda: target.copy_(state))
    out["clone"] = median(lambda: state.clone())
    out["gemm_low (16x16 block)"] = median(lambda: (state.view(-1, 16) @ block.T).view(1, dim))
    for t in (1, 2, 4):
        out[f"rotate t={t}"] = median(
            lambda t=t: state.view(1, dim >> t, 1 << t).transpose(1, 2).reshape(1, dim)
        )
    return out


def render(store: ResultStore) -> str:
    """One row per Q; each primitive as time and multiple of ``copy_``."""
    runs = store.data.get("runs", {})
    names = list(next(iter(runs.values())).keys()) if runs else []
    rows = []
    for q in sorted(runs, key=int):
        r = runs[q]
        rows.append([q, *(f"{fmt_time(r[n])} ({r[n] / r['copy_']:.1f}×)" for n in names)])
    text = md_table(["Q", *names], rows)
    replace_block("passes", text)
    (RESULTS_DIR / "passes.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> None:
    """Measure each Q in this process (no autograd, nothing large kept alive)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qubits", default="20,22,24")
    parser.add_argument("--cap", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args(argv)
    store = ResultStore(RESULTS_DIR / "passes.json")
    if not args.render:
        set_threads(args.threads)
        store.data["machine"] = machine_info(args.threads)
        store.data.setdefault("runs", {})
        for q in args.qubits.split(","):
            wait_for_quiet(max_wait_s=60)
            store.data["runs"][q] = measure(int(q), args.cap)
            store.save()
    print(render(store))


if __name__ == "__main__":
    main()
