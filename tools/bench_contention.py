"""How hqc's step time reacts to one other busy process on this 2-core machine.

One command (bench venv)::

    python tools/bench_contention.py

For hqc float32 (and PennyLane default.qubit for comparison) at Q = 8 and 14, batch 64,
fwd+bwd is timed with 1 and 2 torch threads, alone and next to one competing single-threaded
busy loop (a child process this script starts and stops, at most ``--cap`` seconds per cell);
hqc also with ``tuned`` threads, the :class:`hqc.threads.ThreadTuner` that ``--threads auto``
runs (re-timing 1 against 2 threads every ``--every`` steps, 200 as in a fit, 20 to stress
it; its probes are in the times, over two whole probe cycles). Each cell is a fresh process.
Results: ``tools/results/contention.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import (
    RESULTS_DIR,
    ResultStore,
    emit,
    fixed_values,
    fmt_time,
    machine_info,
    md_table,
    replace_block,
    run_child,
    set_threads,
    thread_env,
    time_calls,
    wait_for_quiet,
)

SPIN = "import time\nend = time.time() + {s}\nwhile time.time() < end:\n    pass\n"


def child_main(args: argparse.Namespace) -> None:
    """One timing: peer at Q, batch, threads (the busy loop, if any, runs beside it)."""
    from bench_qnn import build_peer

    from hqc.threads import ThreadTuner

    threads = args.threads or 2  # 0: tuned between 2 and 1
    set_threads(threads)
    step, _ = build_peer(args.peer, args.qubits, "cpu", threads)
    x, _ = fixed_values(args.qubits, args.batch, 0, seed=1)
    if args.threads:
        timing = time_calls(lambda: step(x), args.cap, 15, 3)
    else:
        tuner = ThreadTuner([2, 1], every=args.every)
        steps = 3 + 2 * (args.every + len(tuner.choices) * (tuner.probe + 1))  # two cycles

        def tuned() -> None:
            tuner.start()
            step(x)
            tuner.stop()

        timing = time_calls(tuned, args.cap, steps, steps)
    emit(
        {
            "median_s": timing.median_s,
            "mean_s": statistics.fmean(timing.times_s),
            "times_s": timing.times_s,
        }
    )


def render(store: ResultStore) -> str:
    """Step time per (peer, Q, threads): alone and with one busy process; slowdown of means."""
    runs = store.data.get("runs", {})
    rows = []
    for key in sorted({k.rsplit("|", 1)[0] for k in runs}):
        alone, busy = runs.get(f"{key}|alone"), runs.get(f"{key}|busy")
        peer, q, threads = key.split("|")
        alone, busy = alone or {}, busy or {}
        slow = f"{_mean(busy) / _mean(alone):.1f}×" if _mean(alone) and _mean(busy) else "–"
        times = [
            f"{fmt_time(r.get('median_s'))} / {fmt_time(_mean(r))}" if r else "–"
            for r in (alone, busy)
        ]
        every = threads.partition("e")[2]  # tuned cells are "0e<every>"
        label = f"tuned 2↔1, probe every {every}" if every else threads
        rows.append([peer, q, label, *times, slow])
    text = md_table(
        ["peer", "Q (B=64)", "torch threads", "alone (median / mean)",
         "+1 busy process (median / mean)", "slowdown (means)"],
        rows,
    )  # fmt: skip
    replace_block("contention", text)
    (RESULTS_DIR / "contention.md").write_text(text + "\n")
    return text


def _mean(record: dict) -> float | None:
    """Mean step time (records from before the mean was stored: their times)."""
    times = record.get("times_s")
    return record.get("mean_s") or (statistics.fmean(times) if times else None)


def main(argv: list[str] | None = None) -> None:
    """Parent: every (peer, Q, threads) alone and beside a busy loop; child: one timing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", default="hqc-f32-real,pl-default-backprop")
    parser.add_argument("--qubits", default="8,14")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--cap", type=float, default=15.0)
    parser.add_argument("--every", default="200,20", help="tuned: steps between probes (list)")
    parser.add_argument("--render", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--peer", default="", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.qubits, args.every = int(args.qubits), int(args.every)
        child_main(args)
        return
    store = ResultStore(RESULTS_DIR / "contention.json")
    if not args.render:
        store.data["machine"] = machine_info(2)
        store.data.setdefault("runs", {})
        for peer in args.peers.split(","):
            for q in args.qubits.split(","):
                tuned = [f"0e{e}" for e in args.every.split(",")] if peer.startswith("hqc") else []
                for label in ["1", "2", *tuned]:
                    threads, _, every = label.partition("e")
                    for mode in ("alone", "busy"):
                        key = f"{peer}|{q}|{label}|{mode}"
                        if key in store.data["runs"]:
                            continue
                        wait_for_quiet(max_wait_s=60)
                        spin = None
                        if mode == "busy":
                            code = SPIN.format(s=3 * args.cap + 30)
                            spin = subprocess.Popen([sys.executable, "-c", code])
                            time.sleep(0.5)
                        cmd = [
                            sys.executable,
                            os.path.abspath(__file__),
                            "--child",
                            "--peer",
                            peer,
                            "--qubits",
                            q,
                            "--batch",
                            str(args.batch),
                            "--threads",
                            threads,
                            "--cap",
                            str(args.cap),
                            "--every",
                            every or "0",
                        ]
                        env = thread_env(int(threads) or 2)
                        result = run_child(cmd, 3 * args.cap + 30, 8 * 1024, env)
                        if spin is not None:
                            spin.kill()
                            spin.wait()
                        record = result.records[0] if result.records else {}
                        record.update(status=result.status, others_cores=result.others_cores)
                        store.data["runs"][key] = record
                        store.save()
                        print(key, record.get("median_s"), flush=True)
    print(render(store))


if __name__ == "__main__":
    main()
