"""``python -m hqc.ablate run MATRIX``: every run of a matrix, in parallel, resumable.

The run directories are the only state (``hqc.ablate.record``): a run with ``result.json`` is
finished and never started again; one without it is started, from its ``last.ckpt`` where an
earlier attempt left one. So a runner killed at any moment loses no finished run and repeats
none; its children die with it, and the same command resumes. A failed run records its stderr
tail in ``result.json`` and the others carry on (``--retry-failed`` starts failed runs again).

    python -m hqc.ablate run ablations/qubits.yaml --workers 2
    python -m hqc.ablate run ablations/qubits.yaml --dry-run        # the run table
    python -m hqc.ablate run ablations/screen.yaml --seeds 0-4      # a pass over every cell
    python -m hqc.ablate run ablations/qubits.yaml --executor ray --address auto --cpus-per-run 2
"""

from __future__ import annotations

import argparse
import fcntl
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from hqc.ablate.executors import ATTEMPT_HEADER, LocalExecutor, Outcome, RayExecutor
from hqc.ablate.matrix import Matrix, load_matrix
from hqc.ablate.plan import Run, resolved_config, root, runs
from hqc.ablate.record import (
    CONFIG_FILE,
    FIT_FILE,
    SCHEMA,
    STATE_FILE,
    read_json,
    read_result,
    write_json,
)
from hqc.errors import UserError

ERROR_LINES = 30
"""Lines of a failed attempt's stderr kept in its ``result.json``."""


def parser() -> argparse.ArgumentParser:
    """The ``run`` command's arguments."""
    p = argparse.ArgumentParser(prog="python -m hqc.ablate run", description=__doc__.split("\n")[0])
    p.add_argument("matrix", type=Path, help="a matrix file (ablations/*.yaml)")
    p.add_argument("--workers", type=int, help="runs at once (default: cores, or Ray's CPUs)")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--address", help="Ray cluster address (default: start a local instance)")
    p.add_argument("--cpus-per-run", type=float, default=1, help="Ray: num_cpus per task")
    p.add_argument("--gpus-per-run", type=float, default=0, help="Ray: num_gpus per task")
    p.add_argument("--retries", type=int, default=2, help="Ray: retries of a lost worker's task")
    p.add_argument("--threads", help="--threads of every fit (default: auto, its core share)")
    p.add_argument("--seeds", help="only these of the matrix's seeds, e.g. 0-4 or 5,7 (passes)")
    p.add_argument("--out", type=Path, help="run directories' root (default: the matrix's)")
    p.add_argument("--retry-failed", action="store_true", help="start failed runs again")
    p.add_argument("--dry-run", action="store_true", help="print the run table, run nothing")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run (or with ``--dry-run`` list) a matrix; returns how many runs failed."""
    args = parser().parse_args(argv)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers}: expected at least 1")
    matrix = load_matrix(args.matrix)
    planned = runs(matrix, args.out)
    if args.seeds is not None:
        chosen = pick_seeds(args.seeds, matrix)
        planned = [run for run in planned if run.seed in chosen]
    if args.dry_run:
        print(run_table(matrix, planned))
        return 0
    base = root(matrix, args.out)
    base.mkdir(parents=True, exist_ok=True)
    with (base / ".runner.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{base}: another runner is working on this matrix") from None
        todo = prepare(matrix, planned, args.retry_failed)
        if not todo:
            return report_done(matrix, planned, sys.stderr)
        if args.executor == "ray":
            executor = RayExecutor(
                args.workers, args.threads, args.address, args.cpus_per_run,
                args.gpus_per_run, args.retries,
            )  # fmt: skip
        else:
            executor = LocalExecutor(args.workers, args.threads)
        execute(matrix, planned, todo, executor, sys.stderr)
        return report_done(matrix, planned, sys.stderr)


def pick_seeds(text: str, matrix: Matrix) -> set[int]:
    """The seeds named by ``--seeds`` (``0-4``, ``5,7`` or both), each one of the matrix's.

    A long matrix runs cell after cell; passes of a few seeds over every cell give each pass a
    complete, reportable design (the report merges them).
    """
    seeds: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            seeds.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected seeds like 0-4 or 5,7") from None
    unknown = sorted(seeds - set(matrix.seeds))
    if unknown or not seeds:
        raise UserError(
            f"--seeds {text!r}: {unknown or 'none'} not among {matrix.path}'s seeds "
            f"{list(matrix.seeds)}"
        )
    return seeds


def status(run: Run) -> str:
    """``ok`` / ``failed`` (finished), ``partial`` (an attempt started) or ``new``."""
    result = read_result(run.directory)
    if result is not None:
        return result["status"]
    return "partial" if (run.directory / STATE_FILE).exists() else "new"


def run_table(matrix: Matrix, planned: Sequence[Run]) -> str:
    """The runs as a markdown table: levels, seed, status and directory.

    Each cell's config is resolved once, so a bad setting fails here, before anything runs;
    its runs differ only in what the runner sets itself (seed, directory), which cannot be
    wrong, and resolving every run cost about 0.4 s each (a minute for 140 runs).
    """
    factors = list(matrix.factors)
    lines = [
        "| # | " + " | ".join(factors) + " | seed | status | directory |",
        "|---:|" + "---|" * (len(factors) + 3),
    ]
    checked: set[str] = set()
    for i, run in enumerate(planned, 1):
        if run.cell.name not in checked:
            resolved_config(matrix, run)
            checked.add(run.cell.name)
        levels = " | ".join(run.cell.levels[f] for f in factors)
        lines.append(f"| {i} | {levels} | {run.seed} | {status(run)} | {run.directory} |")
    return "\n".join(lines)


def prepare(matrix: Matrix, planned: Sequence[Run], retry_failed: bool) -> list[Run]:
    """Write each unfinished run's config (checked against an earlier one); runs to start.

    A run whose child wrote ``fit.json`` but whose runner died before ``result.json`` is
    finished here from its record, not run again.
    """
    todo = []
    for run in planned:
        config = resolved_config(matrix, run)
        path = run.directory / CONFIG_FILE
        if path.exists() and path.read_text() != config:
            raise UserError(
                f"{path}: this run was started with another config than {matrix.path} gives "
                "now; use --out for a new directory, or delete the run directory to redo it"
            )
        result = read_result(run.directory)
        if result is not None and not (retry_failed and result["status"] == "failed"):
            continue
        run.directory.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            tmp = path.with_name(f".{CONFIG_FILE}.tmp")
            tmp.write_text(config)
            tmp.replace(path)
        if result is None and (run.directory / FIT_FILE).exists():
            finish(matrix, run, Outcome(None, "finished while the runner was down"))
            continue
        todo.append(run)
    return todo


def execute(
    matrix: Matrix,
    planned: Sequence[Run],
    todo: Sequence[Run],
    executor: LocalExecutor | RayExecutor,
    out: TextIO,
) -> None:
    """Keep ``executor.workers`` runs going until every run of ``todo`` has finished."""
    by_dir = {run.directory: run for run in todo}
    pending = list(todo)
    total, start, finished_here = len(planned), time.monotonic(), 0
    done = total - len(todo)
    print(
        f"{matrix.name}: {total} runs, {done} finished earlier, {len(todo)} to run "
        f"({executor.name}, {executor.workers} at once) in {root_of(planned)}",
        file=out,
        flush=True,
    )
    try:
        while pending or executor.running:
            while pending and len(executor.running) < executor.workers:
                executor.submit(pending.pop(0).directory)
            for run_dir, outcome in executor.wait(timeout=1.0):
                result = finish(matrix, by_dir[run_dir], outcome)
                finished_here += 1
                remaining = len(pending) + len(executor.running)
                eta = (time.monotonic() - start) / finished_here * remaining
                print(progress(planned, result, remaining, eta), file=out, flush=True)
    except KeyboardInterrupt:
        executor.close()
        print(f"interrupted: the same command resumes {matrix.path}", file=out, flush=True)
        raise SystemExit(130) from None


def finish(matrix: Matrix, run: Run, outcome: Outcome) -> dict:
    """Write a run's ``result.json`` from its ``fit.json`` (ok) or its stderr tail (failed)."""
    fit = read_json(run.directory / FIT_FILE)
    state = read_json(run.directory / STATE_FILE) or {"attempts": 0, "seconds": 0.0}
    ok = fit is not None and outcome.returncode in (0, None)
    result = {
        "schema": SCHEMA,
        "matrix": matrix.name,
        "run": run.id,
        "cell": run.cell.name,
        "levels": dict(run.cell.levels),
        "seed": run.seed,
        "status": "ok" if ok else "failed",
        "returncode": outcome.returncode,
        "error": None if ok else outcome.error or stderr_tail(run.directory),
        "attempts": state["attempts"],
        "seconds": state["seconds"],
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **(fit if ok else {}),
    }
    write_json(run.directory / "result.json", result)
    return result


def stderr_tail(run_dir: Path) -> str:
    """The last lines the latest attempt wrote to stderr."""
    try:
        text = (run_dir / "stderr.log").read_text(errors="replace")
    except FileNotFoundError:
        return "no stderr.log"
    attempt = text.rsplit(ATTEMPT_HEADER, 1)[-1].split("\n", 1)[-1]
    return "\n".join(attempt.rstrip().splitlines()[-ERROR_LINES:]) or "no output on stderr"


def progress(planned: Sequence[Run], result: dict, remaining: int, eta: float) -> str:
    """One line per finished run: done/total, failures, ETA, and the run's outcome."""
    states = [status(run) for run in planned]
    done, failed = sum(s in ("ok", "failed") for s in states), states.count("failed")
    outcome = (
        f"test_acc={result['test_acc']:.3f}"
        if result["status"] == "ok" and result.get("test_acc") is not None
        else result["status"]
    )
    left = _duration(eta) if remaining else "0s"
    return (
        f"[{done}/{len(planned)} done, {failed} failed, ETA {left}] "
        f"{result['run']}: {outcome} ({_duration(result['seconds'])})"
    )


def report_done(matrix: Matrix, planned: Sequence[Run], out: TextIO) -> int:
    """Say how the matrix stands; returns the number of failed runs."""
    failed = [run for run in planned if status(run) == "failed"]
    print(
        f"{matrix.name}: {len(planned) - len(failed)}/{len(planned)} runs ok, {len(failed)} "
        f"failed in {root_of(planned)}",
        file=out,
    )
    for run in failed:
        print(f"  failed: {run.id} (see {run.directory / 'result.json'})", file=out)
    return len(failed)


def root_of(planned: Sequence[Run]) -> Path:
    """The matrix's root directory (above ``<cell>/seed<seed>``)."""
    return planned[0].directory.parents[1]


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
