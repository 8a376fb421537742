"""Largest Q at which hqc's torch backend trains a batch of 64 within a memory budget (8 GiB).

One command (bench venv)::

    python tools/bench_memory.py      # Q 14..22, stops past the budget

Each Q runs in a fresh process: build the paper circuit's ``TorchQNN``, then two Adam training
steps on a batch of 64 (forward, ``loss = outputs.sum()``, backward to inputs and weights,
optimizer step). The peak is the process's whole RSS high-water mark (``VmHWM``: interpreter,
torch and qiskit included), the figure an 8 GiB machine must hold. The parent kills a process
past ``--mem-limit-gib``. Results: ``tools/results/memory.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import (
    RESULTS_DIR,
    ResultStore,
    default_threads,
    emit,
    fixed_values,
    fmt_time,
    hqc_digest,
    machine_info,
    md_table,
    paper_circuit,
    peak_rss_mb,
    replace_block,
    reset_peak_rss,
    rss_mb,
    run_child,
    set_threads,
    thread_env,
    wait_for_quiet,
)

VARIANTS = {"f32-real": ("float32", None), "f64-real": ("float64", None)}
_ITEMSIZE = {"f32-real": 4, "f64-real": 8}  # bytes per amplitude (real path)


def child_main(args: argparse.Namespace) -> None:
    """Two training steps at (variant, Q, batch); emit peak RSS and step time."""
    import torch

    from hqc.quantum.torch_qnn import TorchQNN

    set_threads(args.threads)
    dtype_name, real = VARIANTS[args.variant]
    dtype = getattr(torch, dtype_name)
    paper = paper_circuit(args.qubits)
    x, w = fixed_values(args.qubits, args.batch, len(paper.weights))
    qnn = TorchQNN(
        paper.circuit,
        paper.observables,
        paper.inputs,
        paper.weights,
        initial_weights=w.float(),
        real=real,
    ).to(device=args.device, dtype=dtype)
    optimizer = torch.optim.Adam(qnn.parameters(), lr=0.01)
    x = x.to(device=args.device, dtype=dtype)
    base = rss_mb()
    reset_peak_rss()
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        xin = x.clone().requires_grad_(True)
        optimizer.zero_grad(set_to_none=True)
        qnn(xin).sum().backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    itemsize = torch.empty(0, dtype=dtype).element_size() * (1 if qnn.real else 2)
    emit(
        {
            "variant": args.variant,
            "qubits": args.qubits,
            "batch": args.batch,
            "peak_rss_mb": peak_rss_mb(),
            "base_rss_mb": base,
            "step_s": min(times),
            "state_mb": args.batch * 2**args.qubits * itemsize / 2**20,
            "ops": len(getattr(qnn, "_steps", None) or getattr(qnn, "_ops", ())),
            "threads": torch.get_num_threads(),
            "hqc": hqc_digest(),
        }
    )


def render(store: ResultStore, budget_gib: float) -> str:
    """Table of peak RSS per Q and the largest Q within the budget, per variant."""
    runs = store.data.get("runs", {})
    lines = []
    for variant in VARIANTS:
        records = sorted(
            (r for r in runs.values() if r["variant"] == variant), key=lambda r: r["qubits"]
        )
        if not records:
            continue
        rows, best = [], None
        for r in records:
            ok = r["status"] == "ok" and r["peak_rss_mb"] <= budget_gib * 1024
            if ok:
                best = max(best or 0, r["qubits"])
            peak = (
                f"{r['peak_rss_mb']:,.0f}"
                if r["status"] == "ok"
                else f"> {r['peak_rss_mb']:,.0f} (killed: {r['status']})"
            )
            rows.append(
                [
                    r["qubits"],
                    f"{r['batch'] * 2 ** r['qubits'] * _ITEMSIZE[variant] / 2**20:,.0f}",
                    peak,
                    fmt_time(r.get("step_s")),
                    "yes" if ok else "no",
                ]
            )
        lines += [
            f"**{variant}**, batch {records[0]['batch']}: largest Q within "
            f"{budget_gib:g} GiB = **{best}**",
            "",
            md_table(
                ["Q", "one state (MiB)", "peak RSS (MiB)", "train step", f"≤ {budget_gib:g} GiB"],
                rows,
            ),
            "",
        ]
    text = "\n".join(lines)
    replace_block("memory", text)
    (RESULTS_DIR / "memory.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> None:
    """Parent: ascending Q per variant until the budget is exceeded; child: one measurement."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qubits", default="14,15,16,17,18,19,20,21,22")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--budget-gib", type=float, default=8.0)
    parser.add_argument("--mem-limit-gib", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quiet-wait", type=float, default=120.0)
    parser.add_argument("--render", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="f32-real", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.qubits = int(args.qubits)
        child_main(args)
        return
    store = ResultStore(RESULTS_DIR / "memory.json")
    if args.render:
        print(render(store, args.budget_gib))
        return
    store.data.setdefault("runs", {})
    store.data["machine"] = machine_info(args.threads)
    for variant in args.variants.split(","):
        for q in (int(v) for v in args.qubits.split(",")):
            key = f"{variant}|{q}|{args.batch}"
            if key not in store.data["runs"]:
                wait_for_quiet(max_wait_s=args.quiet_wait)
                cmd = [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--child",
                    "--variant",
                    variant,
                    "--qubits",
                    str(q),
                    "--batch",
                    str(args.batch),
                    "--threads",
                    str(args.threads),
                    "--device",
                    args.device,
                ]
                result = run_child(cmd, 900, args.mem_limit_gib * 1024, thread_env(args.threads))
                record = (
                    result.records[0]
                    if result.records
                    else {
                        "variant": variant,
                        "qubits": q,
                        "batch": args.batch,
                        "peak_rss_mb": result.peak_rss_mb,
                        "tail": result.tail[-1500:],
                    }
                )
                record.update(
                    status=result.status if result.records or result.status != "ok" else "error",
                    others_cores=result.others_cores,
                )
                store.data["runs"][key] = record
                store.save()
                print(
                    f"{variant} Q={q}: {record['status']} peak {record['peak_rss_mb']:.0f} MiB,"
                    f" step {fmt_time(record.get('step_s'))}",
                    flush=True,
                )
            record = store.data["runs"][key]
            if record["status"] != "ok" or record["peak_rss_mb"] > args.budget_gib * 1024:
                break
    print(render(store, args.budget_gib))


if __name__ == "__main__":
    main()
