"""hqc against the JAX-jit and qulacs peers, every peer of a cell timed in one time window.

One command (any interpreter with the ``bench`` extra installed)::

    python tools/bench_window.py                  # Q 4..18, batch 1 and 64, 1 and 2 threads
    python tools/bench_window.py --render         # tables only

The machine these numbers come from is shared and loaded, so a peer grid measured peer after
peer compares different loads. Here each cell (Q, batch, threads) is one fresh process that
builds every peer, calls each once (the first call: JAX traces and compiles there; reported
separately as "first call"), and then times the peers in interleaved rounds (round r runs them
in an order rotated by r), so every peer of a cell sees the same background load. The
reported time is each peer's median over the rounds; ratios are taken within the cell.
``os.getloadavg()`` and the CPU time other processes used are recorded with every cell.

A peer that exceeded the cap, the memory limit or failed at (Q, B, threads) is left out of
the cells with larger Q at the same batch and threads. If the cell's process is killed (memory
or time), the peer it was working on is blamed and the cell re-runs without it. Outputs and
gradients of every peer are checked against hqc float64 first (``bench_qnn.py``'s check).
Results: ``tools/results/window.json``, rendered into ``BENCHMARKS.md`` (block ``window``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import (
    RESULTS_DIR,
    ResultStore,
    default_threads,
    emit,
    fixed_values,
    fmt_ratio,
    fmt_time,
    hqc_digest,
    machine_info,
    md_table,
    replace_block,
    run_child,
    set_threads,
    thread_env,
)
from bench_qnn import JIT_PEERS, SHORT, build_peer, check_main

BASELINE = "hqc-f32-real"
WINDOW_PEERS = (BASELINE, "tc-jax", "pl-default-jax", "qulacs")
STORE = RESULTS_DIR / "window.json"


def window_env(threads: int) -> dict[str, str]:
    """Thread limits for every stack: torch/OpenMP/BLAS (qulacs uses OpenMP) and XLA."""
    env = thread_env(threads)
    flags = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}"
    env["XLA_FLAGS"] = f"{flags} intra_op_parallelism_threads={threads}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def child_main(args: argparse.Namespace) -> None:
    """Build, first-call and then time the peers of one cell in interleaved rounds."""
    set_threads(args.threads)
    x, _ = fixed_values(args.qubits, args.batch, 0, seed=1)
    steps, first = {}, {}
    for peer in args.peers.split(","):
        emit({"peer": peer, "status": "building"})
        try:
            t0 = time.perf_counter()
            step, _ = build_peer(peer, args.qubits, "cpu", args.threads)
            built = time.perf_counter() - t0
            t0 = time.perf_counter()
            step(x)
            first[peer] = (built, time.perf_counter() - t0)
        except Exception as error:
            emit(
                {
                    "peer": peer,
                    "status": "error",
                    "error": f"{type(error).__name__}: {error}",
                    "trace": traceback.format_exc()[-1500:],
                }
            )
            continue
        if first[peer][1] > args.compile_cap:
            emit({"peer": peer, "status": "over_cap", "first_call_s": first[peer][1]})
        else:
            steps[peer] = step
    times: dict[str, list[float]] = {p: [] for p in steps}
    load = [os.getloadavg()[0]]
    order = list(steps)
    for r in range(args.rounds):
        for peer in order[r % len(order) :] + order[: r % len(order)] if order else []:
            if sum(times[peer]) > args.cap:  # enough of this peer in this window
                continue
            t0 = time.perf_counter()
            steps[peer](x)
            times[peer].append(time.perf_counter() - t0)
        load.append(os.getloadavg()[0])
    for peer, ts in times.items():
        emit(
            {
                "peer": peer,
                "status": "ok",
                "median_s": sorted(ts)[len(ts) // 2],
                "times_s": ts,
                "build_s": first[peer][0],
                "first_call_s": first[peer][1],
                "loadavg": load,
            }
        )


def cell_key(qubits: int, batch: int, threads: int) -> str:
    """Key of a cell (all its peers) in the results file."""
    return f"{qubits}|{batch}|{threads}"


def _excluded(store: ResultStore, qubits: int, batch: int, threads: int) -> dict[str, str]:
    """Peers that failed at a smaller Q with the same batch and threads, with the reason."""
    out = {}
    for key, cell in store.data["cells"].items():
        q, b, t = map(int, key.split("|"))
        if b == batch and t == threads and q < qubits:
            for peer, record in cell["peers"].items():
                if record["status"] not in ("ok", "excluded"):
                    out[peer] = f"{record['status']} at Q={q}"
                elif record["status"] == "excluded":
                    out[peer] = record["reason"]
    return out


def run_cell(args: argparse.Namespace, store: ResultStore, q: int, b: int, t: int) -> None:
    """Run one cell; on a kill, blame the peer in progress and re-run without it."""
    excluded = _excluded(store, q, b, t)
    peers = [p for p in args.peers.split(",") if p not in excluded]
    records: dict[str, Any] = {p: {"status": "excluded", "reason": r} for p, r in excluded.items()}
    meta: dict[str, Any] = {}
    while peers:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            f"--peers={','.join(peers)}",
            f"--qubits={q}",
            f"--batch={b}",
            f"--threads={t}",
            f"--rounds={args.rounds}",
            f"--cap={args.cap}",
            f"--compile-cap={args.compile_cap}",
        ]
        load0 = os.getloadavg()
        result = run_child(cmd, args.hard_limit, args.mem_limit_gib * 1024, window_env(t))
        meta = {
            "loadavg_start": load0,
            "loadavg_end": os.getloadavg(),
            "others_cores": result.others_cores,
            "wall_s": result.wall_s,
            "peak_rss_mb": result.peak_rss_mb,
        }
        done = {r["peer"]: r for r in result.records if r["status"] != "building"}
        records.update(done)
        if result.status == "ok":
            break
        building = [r["peer"] for r in result.records if r["status"] == "building"]
        blamed = building[-1] if building else peers[-1]
        if blamed in done:  # killed while timing the rounds: blame the slowest peer
            blamed = max(peers, key=lambda p: done.get(p, {}).get("first_call_s", 0.0))
        records[blamed] = {
            "status": result.status,
            "killed_after_s": result.wall_s,
            "peak_rss_mb": result.peak_rss_mb,
            "tail": result.tail[-800:],
        }
        peers = [p for p in peers if p != blamed and records.get(p, {}).get("status") != "ok"]
        for p in peers:
            records.pop(p, None)
    store.data["cells"][cell_key(q, b, t)] = {"peers": records, **meta, "hqc": hqc_digest()}
    store.save()
    summary = ", ".join(
        f"{p}: {fmt_time(r.get('median_s'))}" if r["status"] == "ok" else f"{p}: {r['status']}"
        for p, r in records.items()
    )
    print(f"[{time.strftime('%H:%M:%S')}] Q={q} B={b} t={t}: {summary}", flush=True)


def _cell_text(record: dict[str, Any] | None, base: dict[str, Any] | None) -> str:
    if record is None:
        return "not run"
    status = record["status"]
    if status == "ok":
        text = fmt_time(record["median_s"])
        if base and base.get("status") == "ok" and record is not base:
            text += f" ({fmt_ratio(record['median_s'] / base['median_s'])})"
        return text
    if status == "over_cap":
        return f"1st call {fmt_time(record.get('first_call_s'))} > compile cap"
    if status == "excluded":
        return "> cap/mem at smaller Q"
    if status == "memory":
        return "> mem limit"
    if status == "error" and "memory" in record.get("error", "").lower():
        return "> RAM"
    return status


def render(store: ResultStore) -> str:
    """One table per (threads, batch): medians, ratio to hqc in the same window, first calls."""
    cells = store.data.get("cells", {})
    settings = store.data.get("settings", {})
    peers = list(WINDOW_PEERS)
    out = [
        f"{settings.get('rounds')} interleaved rounds per cell (a peer stops once its timed calls "
        f"pass {settings.get('cap')} s; a first call over {settings.get('compile_cap')} s drops "
        "the peer); medians. Ratio = peer time / hqc f32 real time in the "
        'same process and window (higher: hqc faster). "1st call" = the first call at that '
        "batch size (JAX: trace + XLA compile; hqc, qulacs: warm-up). load = 1-min load "
        "average at the cell's start → end (2 cores).",
    ]
    keys = sorted(cells, key=lambda k: tuple(map(int, k.split("|"))))
    for threads in sorted({int(k.split("|")[2]) for k in keys}):
        for batch in sorted({int(k.split("|")[1]) for k in keys}):
            rows = []
            for key in keys:
                q, b, t = map(int, key.split("|"))
                if (b, t) != (batch, threads):
                    continue
                cell = cells[key]["peers"]
                base = cell.get(BASELINE)
                first = [
                    fmt_time(cell[p].get("first_call_s")) if p in cell else "–"
                    for p in (BASELINE, *JIT_PEERS)
                ]
                load = cells[key]
                rows.append(
                    [
                        q,
                        *(_cell_text(cell.get(p), base) for p in peers),
                        " / ".join(first),
                        f"{load['loadavg_start'][0]:.1f} → {load['loadavg_end'][0]:.1f}",
                    ]
                )
            out += [
                "",
                f"**{threads} thread{'s' if threads > 1 else ''}, batch {batch}** (fwd+bwd)",
                "",
                md_table(
                    [
                        "Q",
                        *(SHORT[p] for p in peers),
                        "1st call: hqc / TC-NG / PL-jax",
                        "load",
                    ],
                    rows,
                ),
            ]
    text = "\n".join(out)
    replace_block("window", text)
    (RESULTS_DIR / "window.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> None:
    """Parent: the grid of cells (resumable); child: one cell."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qubits", default="4,6,8,10,12,14,16,18")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--threads", default=f"1,{default_threads()}", help="comma list")
    parser.add_argument("--peers", default=",".join(WINDOW_PEERS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cap", type=float, default=15.0, help="timed seconds per peer")
    parser.add_argument(
        "--compile-cap", type=float, default=120.0, help="seconds allowed for the first call"
    )
    parser.add_argument("--hard-limit", type=float, default=900.0, help="seconds per cell")
    parser.add_argument("--mem-limit-gib", type=float, default=10.0)
    parser.add_argument("--rerun", nargs="*", default=[], help="Q:B:THREADS cells to re-run")
    parser.add_argument("--render", action="store_true", help="render tables only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-check", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child or args.child_check:
        args.qubits, args.threads = int(args.qubits), int(args.threads)
        (child_main if args.child else check_main)(args)
        return
    store = ResultStore(STORE)
    store.data.setdefault("cells", {})
    if not args.render:
        threads = [int(t) for t in args.threads.split(",")]
        store.data["settings"] = {
            "rounds": args.rounds,
            "cap": args.cap,
            "compile_cap": args.compile_cap,
            "threads": threads,
        }
        store.data["machine"] = machine_info(max(threads))
        for cell in args.rerun:
            store.data["cells"].pop(cell.replace(":", "|"), None)
        if "check" not in store.data:
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--child-check",
                "--qubits=0",
                "--threads=1",
                f"--peers={args.peers}",
            ]
            result = run_child(cmd, 1800, args.mem_limit_gib * 1024, window_env(1))
            store.data["check"] = [r for r in result.records if r["peer"] in args.peers.split(",")]
            print("check:", *store.data["check"], sep="\n  ", flush=True)
        store.save()
        for t in threads:
            for b in (int(b) for b in args.batches.split(",")):
                for q in (int(q) for q in args.qubits.split(",")):
                    if cell_key(q, b, t) not in store.data["cells"]:
                        run_cell(args, store, q, b, t)
    print(render(store))


if __name__ == "__main__":
    main()
