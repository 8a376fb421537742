"""Where the native kernel beats hqc's fused torch path: fwd+bwd of the paper circuit, A/B.

    python tools/bench_native.py                  # Q 4..12, batch 1, 8, 64, 1 thread
    python tools/bench_native.py --render         # table into BENCHMARKS.md only

Both paths of one ``TorchQNN`` configuration (``native=True`` / ``native=False``) run in one
process, their timed calls interleaved in rounds, so they see the same load; each is reported
as the median of its calls' thread CPU time (which other processes on the cores inflate far
less than wall time) and of wall time. The ratio fused / native over ``work = batch × 2**Q ×
gates`` is what sets ``hqc.quantum.torch_qnn.qnn.NATIVE_MAX_WORK``. Results:
``tools/results/native.json`` (cells already there are kept; ``--rerun`` forgets them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import (
    RESULTS_DIR,
    ResultStore,
    fixed_values,
    fmt_ratio,
    fmt_time,
    hqc_digest,
    machine_info,
    md_table,
    paper_circuit,
    replace_block,
    set_threads,
)


def measure(qubits: int, batch: int, rounds: int, cap: float) -> dict[str, Any]:
    """Interleaved rounds of both paths; medians of CPU and wall time per fwd+bwd."""
    import torch

    from hqc.quantum.torch_qnn import TorchQNN
    from hqc.quantum.torch_qnn.qnn import NATIVE_MAX_WORK

    paper = paper_circuit(qubits)
    _, weights = fixed_values(qubits, 1, len(paper.weights))
    x = torch.rand(batch, len(paper.inputs), generator=torch.Generator().manual_seed(0))
    modules = {
        name: TorchQNN(
            paper.circuit,
            paper.observables,
            paper.inputs,
            paper.weights,
            initial_weights=weights.float(),
            native=name == "native",
        ).float()
        for name in ("native", "fused")
    }
    times: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wall": []} for k in modules}

    def step(module: Any) -> None:
        xin = x.clone().requires_grad_(True)
        module.weight.grad = None
        module(xin).sum().backward()

    for module in modules.values():
        step(module)  # warm-up (and the kernel's one-time build)
    for _ in range(rounds):
        for name, module in modules.items():
            end = time.thread_time() + cap / rounds / 2
            while True:
                c, w = time.thread_time(), time.perf_counter()
                step(module)
                times[name]["cpu"].append(time.thread_time() - c)
                times[name]["wall"].append(time.perf_counter() - w)
                if time.thread_time() > end:
                    break
    out: dict[str, Any] = {
        "qubits": qubits,
        "batch": batch,
        "gates": modules["native"]._native.count,
        "auto_native": batch * 2**qubits * modules["native"]._native.count <= NATIVE_MAX_WORK,
        "load": os.getloadavg()[0],
    }
    for name, t in times.items():
        out[name] = {k: statistics.median(v) for k, v in t.items()} | {"calls": len(t["cpu"])}
    return out


def render(store: ResultStore) -> str:
    """Markdown table of every cell, ordered by work."""
    cells = sorted(store.data.get("cells", {}).values(), key=lambda r: (r["qubits"], r["batch"]))
    rows = []
    for r in cells:
        work = r["batch"] * 2 ** r["qubits"] * r["gates"]
        n, f = r["native"], r["fused"]
        rows.append(
            [
                r["qubits"],
                r["batch"],
                f"{work:,}",
                f"{fmt_time(n['cpu'])} / {fmt_time(n['wall'])}",
                f"{fmt_time(f['cpu'])} / {fmt_time(f['wall'])}",
                f"**{fmt_ratio(f['cpu'] / n['cpu'])}**",
                "native" if r["auto_native"] else "fused",
                f"{r['load']:.1f}",
            ]
        )
    m = store.data.get("machine", {})
    head = (
        f"1 thread; hqc sources `{store.data.get('hqc', '?')}`; {m.get('cpu', '')}. CPU / wall "
        "= medians of thread CPU time / wall time per fwd+bwd (float32 module), both paths "
        "interleaved in one process. Ratio = fused CPU time / native CPU time (> 1: native faster)."
        " auto = the path `native=None` takes. load = 1-min load average at the cell's end.\n\n"
    )
    headers = ["Q", "batch", "work (B·2^Q·gates)", "native", "fused", "fused ÷ native", "auto"]
    return head + md_table([*headers, "load"], rows)


def main(argv: list[str] | None = None) -> None:
    """Measure the missing cells, then render."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qubits", default="4,6,8,10,12")
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--cap", type=float, default=2.0, help="CPU seconds per path and cell")
    parser.add_argument("--rerun", action="store_true", help="forget the stored cells first")
    parser.add_argument("--render", action="store_true")
    args = parser.parse_args(argv)
    store = ResultStore(RESULTS_DIR / "native.json")
    if not args.render:
        set_threads(1)
        if args.rerun:
            store.data.pop("cells", None)
        store.data["machine"], store.data["hqc"] = machine_info(1), hqc_digest()
        cells = store.data.setdefault("cells", {})
        for q in map(int, args.qubits.split(",")):
            for b in map(int, args.batches.split(",")):
                if f"{q}:{b}" not in cells:
                    cells[f"{q}:{b}"] = measure(q, b, args.rounds, args.cap)
                    store.save()
                    print(cells[f"{q}:{b}"], flush=True)
    text = render(store)
    replace_block("native", text)
    print(text)


if __name__ == "__main__":
    main()
