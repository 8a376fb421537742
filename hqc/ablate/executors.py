"""Where a run's child process runs: here (``local``) or as a Ray task (``ray``).

Both start the same command, ``python -m hqc fit --config <run>/config.yaml`` (plus
``--ckpt_path <run>/checkpoints/last.ckpt`` when an earlier attempt left one), through
:func:`start_attempt`, and both leave the same files; the runner reads the outcome from the run
directory, never from the executor, so resuming works the same on a cluster (whose run
directories must be on a filesystem every node sees). Child processes, not threads or actors:
Lightning installs signal handlers and CUDA breaks after fork. A child dies with whoever started
it (``PR_SET_PDEATHSIG`` on Linux), so a killed runner leaves no fit writing into a run
directory that its resumed successor starts again.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hqc.ablate.record import CONFIG_FILE, FIT_FILE, STATE_FILE, read_json, write_json
from hqc.errors import UserError
from hqc.threads import CONCURRENT_RUNS_ENV, available_cores

ATTEMPT_HEADER = "=== hqc.ablate attempt"
"""Starts each attempt's section of ``stderr.log``; a failure's error is the text after it."""
PASSED_ENV = ("HQC_", "WANDB_")
"""Environment variables (prefixes) the driver hands to Ray tasks on other machines."""


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: the child's exit status (None: no status, ``error`` says why)."""

    returncode: int | None
    error: str | None = None


def start_attempt(
    run_dir: Path, cwd: str, env: dict[str, str], threads: str | None
) -> tuple[subprocess.Popen, float]:
    """Count an attempt in ``state.json``, then start its child (resuming where it can).

    With ``checkpoints/last.ckpt`` the child resumes from it; without, the attempt starts
    clean (a best checkpoint or a record left by a killed attempt is removed first).
    """
    state = read_json(run_dir / STATE_FILE) or {"attempts": 0, "seconds": 0.0}
    state["attempts"] += 1
    write_json(run_dir / STATE_FILE, state)
    last = run_dir / "checkpoints" / "last.ckpt"
    command = [sys.executable, "-m", "hqc", "fit", "--config", str(run_dir / CONFIG_FILE)]
    if last.exists():
        command += ["--ckpt_path", str(last)]
    else:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    if threads is not None:
        command.append(f"--threads={threads}")
    (run_dir / FIT_FILE).unlink(missing_ok=True)
    stdout = (run_dir / "stdout.log").open("ab")
    stderr = (run_dir / "stderr.log").open("ab")
    how = f"resumed from {last}" if last.exists() else "from the start"
    stderr.write(f"{ATTEMPT_HEADER} {state['attempts']} ({how})\n".encode())
    stderr.flush()
    with stdout, stderr:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # a Ctrl-C at the terminal reaches the runner only
            preexec_fn=_die_with_parent(),
        )
    return process, time.monotonic()


def end_attempt(run_dir: Path, started: float) -> None:
    """Add the attempt's wall seconds to ``state.json``."""
    state = read_json(run_dir / STATE_FILE) or {"attempts": 1, "seconds": 0.0}
    state["seconds"] = round(state["seconds"] + time.monotonic() - started, 3)
    write_json(run_dir / STATE_FILE, state)


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when its parent thread dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    return lambda: libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


class LocalExecutor:
    """``workers`` child processes at once on this machine, polled from the main thread.

    Each child gets ``HQC_CONCURRENT_RUNS=workers``, so ``--threads auto`` gives it its share of
    the cores (``hqc.threads``); ``threads`` passes ``--threads`` to every child instead.
    """

    name = "local"

    def __init__(self, workers: int | None, threads: str | None) -> None:
        self.workers = workers or available_cores()
        self.threads = threads
        self.env = {CONCURRENT_RUNS_ENV: str(self.workers), "PYTHONUNBUFFERED": "1"}
        self.running: dict[Path, tuple[subprocess.Popen, float]] = {}

    def submit(self, run_dir: Path) -> None:
        """Start a run's next attempt."""
        self.running[run_dir] = start_attempt(run_dir, os.getcwd(), self.env, self.threads)

    def wait(self, timeout: float) -> list[tuple[Path, Outcome]]:
        """The runs whose child has exited, waiting up to ``timeout`` seconds for one."""
        deadline = time.monotonic() + timeout
        while True:
            done = [(d, p, t) for d, (p, t) in self.running.items() if p.poll() is not None]
            if done or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        for run_dir, _, started in done:
            del self.running[run_dir]
            end_attempt(run_dir, started)
        return [(run_dir, Outcome(process.returncode)) for run_dir, process, _ in done]

    def close(self) -> None:
        """Kill every running child (each resumes from its last checkpoint next time)."""
        for process, _ in self.running.values():
            process.kill()
        for run_dir, (process, started) in self.running.items():
            process.wait()
            end_attempt(run_dir, started)
        self.running.clear()


def _ray_attempt(
    run_dir: str, cwd: str, env: dict[str, str], threads: str | None, cpus: float
) -> int:
    """A Ray task: one attempt's child process, start to exit, on whichever node runs it.

    ``--threads auto`` in the child then gives it about the task's ``cpus`` cores.
    """
    env = {**env, CONCURRENT_RUNS_ENV: str(max(1, int(available_cores() // max(cpus, 1))))}
    process, started = start_attempt(Path(run_dir), cwd, env, threads)
    returncode = process.wait()
    end_attempt(Path(run_dir), started)
    return returncode


class RayExecutor:
    """Each attempt is a Ray task with ``cpus``/``gpus``; ``workers`` tasks in flight at once.

    ``max_retries`` restarts a task whose worker or node was lost; the retried task starts the
    child again, which resumes from the run's last checkpoint. A task with no GPU gets
    ``CUDA_VISIBLE_DEVICES=""`` (recent Ray shows every GPU to such tasks).
    """

    name = "ray"

    def __init__(
        self,
        workers: int | None,
        threads: str | None,
        address: str | None,
        cpus: float,
        gpus: float,
        retries: int,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'hqc[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address)
        cluster_cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(1, int(cluster_cpus // max(cpus, 1e-9)))
        self.threads = threads
        self.env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV)}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.cpus = cpus
        if gpus == 0:
            self.env["CUDA_VISIBLE_DEVICES"] = ""
        self.task = ray.remote(_ray_attempt).options(
            num_cpus=cpus, num_gpus=gpus, max_retries=retries, retry_exceptions=False
        )
        self.running: dict[Any, Path] = {}

    def submit(self, run_dir: Path) -> None:
        """Queue a run's next attempt as a task."""
        ref = self.task.remote(str(run_dir), os.getcwd(), self.env, self.threads, self.cpus)
        self.running[ref] = run_dir

    def wait(self, timeout: float) -> list[tuple[Path, Outcome]]:
        """The runs whose task has ended, waiting up to ``timeout`` seconds for one."""
        if not self.running:
            return []
        ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=timeout)
        finished = []
        for ref in ready:
            run_dir = self.running.pop(ref)
            try:
                finished.append((run_dir, Outcome(self.ray.get(ref))))
            except self.ray.exceptions.RayError as error:  # retries used up, task cancelled
                finished.append((run_dir, Outcome(None, f"Ray task failed: {error}")))
        return finished

    def close(self) -> None:
        """Cancel the tasks in flight (their children die with their workers)."""
        for ref in self.running:
            self.ray.cancel(ref, force=True)
        self.running.clear()
