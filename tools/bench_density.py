"""Noisy simulation speed: hqc's torch DensityQNN against Aer's density_matrix method.

One command (run it with hqc's interpreter, see BENCHMARKS.md)::

    python tools/bench_density.py                   # Q = 4..12, batch 1 and 16
    python tools/bench_density.py --qubits 4 6 --batches 1 --repeats 3   # a quick run

The circuit is the paper's (``bench_common.paper_circuit``) under a noise preset (default
``ibm_heron``: its native basis rz/sx/x/cz makes ρ complex); a second torch peer runs the same
rates in the basis rx/ry/rz/cx, where hqc's RY/CX circuit keeps ρ real. Per (Q, batch) the peers
are built once and then called round-robin (interleaved, so machine load hits them alike):
torch forward (``no_grad``), torch forward+backward (``out.sum().backward()``, gradients of
inputs and weights), Aer ``EstimatorV2`` with ``method="density_matrix"`` and
``default_precision=0`` (forward only, the batch as one PUB). The median of the rounds is
reported. A peer whose time at the previous Q, scaled by 16 (``4**ΔQ``), would pass ``--cap-s``,
or whose estimated memory passes ``--mem-gib``, is skipped at that cell; rounds stop once a cell
has run for ``--cap-s``. A cell's first call of each peer is a warm-up (the torch and Aer
forward's outputs are kept for the agreement check). Agreement of the torch
forward (readout error off; Aer's estimator ignores it) with Aer is recorded per cell. Results go
to ``tools/results/density.json``; ``--render`` writes the table into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import (
    RESULTS_DIR,
    ResultStore,
    default_threads,
    fixed_values,
    fmt_ratio,
    fmt_time,
    machine_info,
    md_table,
    paper_circuit,
    replace_block,
    set_threads,
)

PEERS = {
    "torch-fwd": "DensityQNN forward, float32, preset basis",
    "torch-fwdbwd": "DensityQNN forward+backward, float32, preset basis",
    "torch-real-fwd": "DensityQNN forward, float32, basis rx/ry/rz/cx (real ρ)",
    "torch-real-fwdbwd": "DensityQNN forward+backward, float32, basis rx/ry/rz/cx (real ρ)",
    "aer-fwd": "Aer EstimatorV2, method=density_matrix, precision 0, forward only",
}
RESULTS = RESULTS_DIR / "density.json"


def _memory_gib(peer: str, q: int, batch: int, blocks: int) -> float:
    """Rough peak memory: density matrices held at once (checkpointed segments for backward)."""
    entry = 4 if "real" in peer else 8  # float32 / complex64
    if peer.startswith("aer"):
        return 16 * 4**q * max(1, min(batch, os.cpu_count() or 1)) / 2**30
    held = 3 if peer.endswith("fwd") else 3 * math.ceil(math.sqrt(blocks)) + 3
    return held * batch * entry * 4**q / 2**30


def _peers(q: int, batch: int, preset: str, threads: int) -> tuple[dict[str, Callable], dict]:
    """Callables per peer for one cell, and the cell's facts (blocks, agreement)."""
    import numpy as np
    import torch
    from qiskit_aer.primitives import EstimatorV2

    from hqc.noise.aer import noise_model, transpile_to_basis
    from hqc.noise.spec import load_preset
    from hqc.quantum.density import DensityQNN

    paper = paper_circuit(q)
    spec = dataclasses.replace(load_preset(preset), readout_error=0.0)
    real_spec = dataclasses.replace(spec, basis_gates=("rx", "ry", "rz", "cx"), virtual_gates=())
    x, w = fixed_values(q, batch, len(paper.weights))
    args = (paper.circuit, paper.observables, paper.inputs, paper.weights)
    dense = DensityQNN(*args, noise=spec, initial_weights=w.float())
    real = DensityQNN(*args, noise=real_spec, initial_weights=w.float())
    assert real.real and not dense.real
    xf = x.float()

    def forward(module: DensityQNN) -> Callable[[], Any]:
        def run() -> Any:
            with torch.no_grad():
                return module(xf)

        return run

    def step(module: DensityQNN) -> Callable[[], Any]:
        def run() -> None:
            module.zero_grad()
            module(xf.clone().requires_grad_()).sum().backward()

        return run

    circuit = transpile_to_basis(paper.circuit, spec)
    estimator = EstimatorV2(
        options={
            "default_precision": 0.0,
            "backend_options": {
                "method": "density_matrix",
                "noise_model": noise_model(spec),
                "max_parallel_threads": threads,
            },
        }
    )
    params = [*paper.inputs, *paper.weights]
    values = np.concatenate([x.numpy(), np.tile(w.float().double().numpy(), (batch, 1))], 1)
    values = values[:, [params.index(p) for p in circuit.parameters]]

    def aer() -> Any:
        return estimator.run([(circuit, paper.observables[0], values)]).result()[0].data.evs

    peers = {
        "torch-fwd": forward(dense),
        "torch-fwdbwd": step(dense),
        "torch-real-fwd": forward(real),
        "torch-real-fwdbwd": step(real),
        "aer-fwd": aer,
    }
    facts = {"blocks": len(dense._steps), "blocks_real": len(real._steps)}
    return peers, facts


def run_cell(args: argparse.Namespace, q: int, batch: int, previous: dict | None) -> dict:
    """Interleaved rounds of every peer that fits the time cap and memory limit."""
    peers, facts = _peers(q, batch, args.preset, args.threads)
    skipped = {}
    for peer in list(peers):
        blocks = facts["blocks_real" if "real" in peer else "blocks"]
        before = (previous or {}).get("median_s", {}).get(peer)
        if previous is not None and (before is None or before * 16 > args.cap_s):
            skipped[peer] = "previous Q over the cap" if before else "skipped at previous Q"
        elif _memory_gib(peer, q, batch, blocks) > args.mem_gib:
            skipped[peer] = f"needs ~{_memory_gib(peer, q, batch, blocks):.0f} GiB"
    active = {p: f for p, f in peers.items() if p not in skipped}
    outputs = {p: active[p]() for p in ("torch-fwd", "aer-fwd") if p in active}
    times: dict[str, list[float]] = {p: [] for p in active}
    for p, f in active.items():  # warm-up, only where a call is short (else it is noise)
        before = (previous or {}).get("median_s", {}).get(p, 0.0)
        if p not in outputs and before * 16 < 10.0:
            f()
    start = time.perf_counter()
    for _ in range(args.repeats):
        for p, f in active.items():
            t0 = time.perf_counter()
            f()
            times[p].append(time.perf_counter() - t0)
        if time.perf_counter() - start > args.cap_s:
            break
    record: dict[str, Any] = {
        "q": q,
        "batch": batch,
        **facts,
        "median_s": {p: statistics.median(t) for p, t in times.items()},
        "rounds": {p: len(t) for p, t in times.items()},
        "skipped": skipped,
        "loadavg": os.getloadavg(),
    }
    if "torch-fwd" in outputs and "aer-fwd" in outputs:
        ours = outputs["torch-fwd"][:, 0].double().numpy()
        record["max_abs_diff_vs_aer"] = float(abs(ours - outputs["aer-fwd"]).max())
    return record


def render(store: ResultStore) -> str:
    """The results table (ratios are Aer's median over torch's, same cell, same run)."""
    rows = []
    cells = [r for k, r in store.data.items() if k != "machine"]
    for r in sorted(cells, key=lambda r: (r["q"], r["batch"])):
        m = r["median_s"]

        def cell(peer: str, m: dict = m, r: dict = r) -> str:
            return fmt_time(m[peer]) if peer in m else f"— ({r['skipped'].get(peer, '')})"

        aer = m.get("aer-fwd")
        rows.append(
            [
                r["q"],
                r["batch"],
                r["blocks"],
                *(cell(p) for p in PEERS),
                fmt_ratio(aer / m["torch-fwd"]) if aer and "torch-fwd" in m else "—",
                fmt_ratio(aer / m["torch-real-fwd"]) if aer and "torch-real-fwd" in m else "—",
                f"{r['max_abs_diff_vs_aer']:.1e}" if "max_abs_diff_vs_aer" in r else "—",
            ]
        )
    headers = ["Q", "batch", "blocks", *PEERS, "Aer / torch fwd", "Aer / torch real fwd", "|Δ|"]
    machine = store.get("machine") or {}
    note = (
        f"Measured {machine.get('date', '?')}, {machine.get('threads', '?')} threads, "
        f"load average at start {machine.get('loadavg', '?')} (shared machine)."
    )
    return md_table(headers, rows) + "\n\n" + note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qubits", type=int, nargs="+", default=[4, 6, 8, 10, 12])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--preset", default="ibm_heron")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cap-s", type=float, default=150.0, help="per call, and per cell")
    parser.add_argument("--mem-gib", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--render", action="store_true", help="only write BENCHMARKS.md")
    args = parser.parse_args()
    store = ResultStore(RESULTS)
    if not args.render:
        set_threads(args.threads)
        store.put("machine", machine_info(args.threads))
        previous: dict[int, dict] = {}
        for q in sorted(args.qubits):
            for batch in args.batches:
                record = run_cell(args, q, batch, previous.get(batch))
                previous[batch] = record
                store.put(f"{q}:{batch}", record)
                print(q, batch, record["median_s"], record["skipped"], flush=True)
    replace_block("density", render(store))


if __name__ == "__main__":
    main()
