"""The memory-bandwidth floor: forward time per gate at Q = 20…24, batch 1, vs a state copy.

One command (bench venv)::

    python tools/bench_bandwidth.py

A statevector gate must read and write the whole state once, so a plain ``state.clone()``
(read + write of 2^Q amplitudes) is the floor of one gate pass. For each Q and each hqc variant
the script times (no autograd, batch 1) the paper circuit's forward pass and divides by its
number of gates (hqc fuses gates, so per gate can beat the floor) and by its number of state
passes (fused blocks + qubit-order rotations: each one reads and writes the state); it times
``clone()`` and an in-place ``copy_`` of a state of the same dtype. One fresh process per
(variant, Q). Results: ``tools/results/bandwidth.json``.
"""

from __future__ import annotations

import argparse
import os
import sys

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
    replace_block,
    run_child,
    set_threads,
    thread_env,
    time_calls,
    wait_for_quiet,
)

VARIANTS = {
    "f32-real": ("float32", None),
    "f32-complex": ("float32", False),
    "f64-real": ("float64", None),
}


def child_main(args: argparse.Namespace) -> None:
    """Time forward and copies at one (variant, Q)."""
    import torch

    from hqc.quantum.torch_qnn import TorchQNN

    set_threads(args.threads)
    dtype_name, real = VARIANTS[args.variant]
    dtype = getattr(torch, dtype_name)
    paper = paper_circuit(args.qubits)
    x, w = fixed_values(args.qubits, 1, len(paper.weights))
    qnn = TorchQNN(
        paper.circuit,
        paper.observables,
        paper.inputs,
        paper.weights,
        initial_weights=w.float(),
        real=real,
    ).to(device=args.device, dtype=dtype)
    x = x.to(device=args.device, dtype=dtype)
    with torch.no_grad():
        forward = time_calls(lambda: qnn(x), args.cap, args.repeats, 3, args.device)
    state_dtype = (
        dtype if qnn.real else (torch.complex64 if dtype == torch.float32 else torch.complex128)
    )
    state = torch.randn(1, 2**args.qubits, dtype=state_dtype, device=args.device)
    target = torch.empty_like(state)
    clone = time_calls(lambda: state.clone(), args.cap, 30, 5, args.device)
    copy = time_calls(lambda: target.copy_(state), args.cap, 30, 5, args.device)
    ops = list(getattr(qnn, "_steps", None) or getattr(qnn, "_ops", ()))  # private: reporting only
    rotations = sum(1 for op in ops if op[0] == "rotate")
    emit(
        {
            "variant": args.variant,
            "qubits": args.qubits,
            "threads": torch.get_num_threads(),
            "hqc": hqc_digest(),
            "forward": forward.as_dict(),
            "clone": clone.as_dict(),
            "copy": copy.as_dict(),
            "gates": paper.num_gates(),
            "passes": len(ops),
            "rotations": rotations,
            "state_mb": state.numel() * state.element_size() / 2**20,
            "state_dtype": str(state_dtype),
        }
    )


def render(store: ResultStore) -> str:
    """Per-gate and per-pass forward time next to clone/copy of the same state."""
    rows = []
    for key in sorted(
        store.data.get("runs", {}), key=lambda k: (k.split("|")[0], int(k.split("|")[1]))
    ):
        r = store.data["runs"][key]
        if r.get("status") != "ok":
            rows.append([r["variant"], r["qubits"], r.get("status"), *["–"] * 8])
            continue
        fwd, clone, copy = (r[k]["median_s"] for k in ("forward", "clone", "copy"))
        per_gate, per_pass = fwd / r["gates"], fwd / max(r["passes"], 1)
        gbps = 2 * r["state_mb"] * 2**20 / copy / 1e9
        rows.append(
            [
                r["variant"],
                r["qubits"],
                f"{r['state_mb']:.0f} MiB",
                fmt_time(fwd),
                f"{r['gates']} / {r['passes']}",
                fmt_time(per_gate),
                fmt_time(per_pass),
                fmt_time(clone),
                f"{fmt_time(copy)} ({gbps:.0f} GB/s)",
                f"**{per_gate / clone:.2f}×**",
                f"{per_gate / copy:.2f}× / {per_pass / copy:.2f}×",
            ]
        )
    text = md_table(
        [
            "variant",
            "Q",
            "state",
            "forward (B=1)",
            "gates / state passes",
            "per gate",
            "per pass",
            "state.clone()",
            "copy_ (in place)",
            "per gate ÷ clone",
            "per gate / per pass ÷ copy_",
        ],
        rows,
    )
    replace_block("bandwidth", text)
    (RESULTS_DIR / "bandwidth.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> None:
    """Parent: every (variant, Q) in a fresh process; child: one measurement."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qubits", default="20,21,22,23,24")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--cap", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quiet-wait", type=float, default=300.0)
    parser.add_argument("--rerun", action="store_true")
    parser.add_argument("--render", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="f32-real", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.qubits = int(args.qubits)
        child_main(args)
        return
    store = ResultStore(RESULTS_DIR / "bandwidth.json")
    if args.render:
        print(render(store))
        return
    store.data.setdefault("runs", {})
    store.data["machine"] = machine_info(args.threads)
    for variant in args.variants.split(","):
        for q in (int(v) for v in args.qubits.split(",")):
            key = f"{variant}|{q}"
            if key in store.data["runs"] and not args.rerun:
                continue
            quiet = wait_for_quiet(max_wait_s=args.quiet_wait)
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                "--variant",
                variant,
                "--qubits",
                str(q),
                "--cap",
                str(args.cap),
                "--repeats",
                str(args.repeats),
                "--threads",
                str(args.threads),
                "--device",
                args.device,
            ]
            result = run_child(cmd, 600, 12 * 1024, thread_env(args.threads))
            record = (
                result.records[0]
                if result.records
                else {"variant": variant, "qubits": q, "tail": result.tail[-1500:]}
            )
            record.update(
                status=result.status,
                others_cores=result.others_cores,
                others_before=quiet,
                peak_rss_mb=result.peak_rss_mb,
            )
            store.data["runs"][key] = record
            store.save()
            fwd = record.get("forward", {}).get("median_s")
            print(
                f"{variant} Q={q}: {result.status} forward {fmt_time(fwd)} clone "
                f"{fmt_time(record.get('clone', {}).get('median_s'))} others "
                f"{result.others_cores:.2f}",
                flush=True,
            )
    print(render(store))


if __name__ == "__main__":
    main()
