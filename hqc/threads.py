"""How many torch threads a fit should use: from the circuit's size and the cores it may have.

hqc's statevector steps are hundreds of small ops, each entering a parallel region; below
about :data:`SERIAL_BELOW_QUBITS` qubits one thread is as fast as two on the benchmark machine,
and a second thread whose core is taken by another process makes every region wait a scheduler
quantum (a 2-3× slower step beside one busy process, ``tools/bench_contention.py``). So small
circuits run on one thread, larger ones on this run's share of the cores.

The share is the cores this process may run on (``os.sched_getaffinity``, which honours
``taskset`` and container CPU sets, unlike ``os.cpu_count``) divided by the number of runs
started side by side. A runner that starts ``k`` fits at once sets ``HQC_CONCURRENT_RUNS=k``
in their environment (or passes each ``--threads N`` explicitly); ``--threads auto`` then
gives each run ``cores // k`` threads at most.

Whether the share beats one thread depends on what else runs, and that changes during a fit;
so where ``auto`` picks more than one thread it also adds :class:`AdaptiveThreads`, which times
training steps with the share and with one thread every few hundred steps and keeps the faster.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn

from hqc.errors import UserError

SERIAL_BELOW_QUBITS = 12
"""Circuits with fewer qubits run on one thread (``BENCHMARKS.md``, contention)."""
CONCURRENT_RUNS_ENV = "HQC_CONCURRENT_RUNS"
"""Environment variable: how many fits share this machine's cores (default 1)."""


def available_cores() -> int:
    """Cores this process may run on (CPU affinity; ``os.cpu_count`` where unsupported)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def concurrent_runs() -> int:
    """Runs sharing the cores, from :data:`CONCURRENT_RUNS_ENV` (at least 1)."""
    value = os.environ.get(CONCURRENT_RUNS_ENV, "1")
    try:
        runs = int(value)
    except ValueError:
        raise UserError(f"{CONCURRENT_RUNS_ENV}={value!r}: expected a whole number") from None
    if runs < 1:
        raise UserError(f"{CONCURRENT_RUNS_ENV}={value!r}: expected at least 1")
    return runs


def choose_threads(
    num_qubits: int, cores: int | None = None, runs: int | None = None, parallel: bool = False
) -> int:
    """Torch threads for a circuit of ``num_qubits`` qubits (0: no circuit).

    Args:
        num_qubits: Qubits of the model's largest simulated circuit.
        cores: Cores available (default: :func:`available_cores`).
        runs: Runs sharing them (default: :func:`concurrent_runs`).
        parallel: The model has a ``parallel_batch`` module: the share at any size.
    """
    share = core_share(cores, runs)
    return share if parallel or num_qubits >= SERIAL_BELOW_QUBITS else 1


def core_share(cores: int | None = None, runs: int | None = None) -> int:
    """This run's share of the cores: ``cores // runs``, at least one (defaults as above)."""
    cores = available_cores() if cores is None else cores
    runs = concurrent_runs() if runs is None else runs
    return max(1, cores // runs)


def model_qubits(model: nn.Module) -> int:
    """Qubits of the largest simulated circuit in ``model`` (0 without one)."""
    sizes = [
        m.num_qubits for m in model.modules() if isinstance(getattr(m, "num_qubits", None), int)
    ]
    return max(sizes, default=0)


def parse_threads(value: str | int) -> int | None:
    """``"auto"`` → None; a positive whole number → itself; anything else is a user error."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        threads = int(value)
    except (TypeError, ValueError):
        raise UserError(f"threads={value!r}: expected 'auto' or a whole number >= 1") from None
    if threads < 1:
        raise UserError(f"threads={value!r}: expected 'auto' or a whole number >= 1")
    return threads


def apply_threads(value: str | int, model: nn.Module) -> AdaptiveThreads | None:
    """Set torch's intra-op threads for ``model`` from the ``threads`` setting.

    Returns the :class:`AdaptiveThreads` callback the fit should run where ``value`` is
    ``auto`` and the size rule gives more than one thread (it then re-times one), else ``None``.
    """
    threads = parse_threads(value)
    if threads is not None:
        torch.set_num_threads(threads)
        return None
    parallel = any(getattr(m, "parallel_batch", False) for m in model.modules())
    threads = choose_threads(model_qubits(model), parallel=parallel)
    torch.set_num_threads(threads)
    return AdaptiveThreads((threads, 1)) if threads > 1 else None


class ThreadTuner:
    """Keeps the fastest of a few thread counts by timing steps with each, again and again.

    A second thread is worth it on a quiet machine and costs 2-3x beside one busy process (every
    parallel region waits for the descheduled thread), and other processes come and go during a
    fit. So every ``every`` steps the tuner times ``probe`` steps with each count (after one
    step to settle a switch) and keeps the one with the lowest median. Call :meth:`start` and
    :meth:`stop` around each step.

    Args:
        choices: Thread counts to compare; the first is used until the first probe ends.
        probe: Timed steps per choice in a probe.
        every: Steps between the end of one probe and the start of the next.
        warmup: Steps skipped before the first probe (first-step costs).
        clock: Time source (seconds).
    """

    def __init__(
        self,
        choices: Sequence[int],
        probe: int = 5,
        every: int = 200,
        warmup: int = 3,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not choices or min(choices) < 1 or probe < 1 or every < 0 or warmup < 0:
            raise ValueError(f"bad ThreadTuner settings: {choices=}, {probe=}, {every=}")
        self.choices, self.probe, self.every, self.clock = list(choices), probe, every, clock
        self.threads, self.probes = self.choices[0], 0
        self._wait, self._queue, self._times = warmup, [], {}
        self._started: float | None = None

    def start(self) -> None:
        """A step begins."""
        if not self._queue and self._wait == 0:  # begin a probe: each choice, settle + time
            self._queue = [(c, k) for c in self.choices for k in range(self.probe + 1)]
            self._times = {c: [] for c in self.choices}
        if self._queue:
            self._set(self._queue[0][0])
        self._started = self.clock()

    def stop(self) -> None:
        """The step begun by :meth:`start` ended."""
        if self._started is None:
            return
        elapsed, self._started = self.clock() - self._started, None
        if not self._queue:
            self._wait -= 1
            return
        threads, k = self._queue.pop(0)
        if k:  # k = 0 is the step that settles a switch
            self._times[threads].append(elapsed)
        if not self._queue:
            self.probes += 1
            self._set(min(self.choices, key=lambda c: statistics.median(self._times[c])))
            self._wait = self.every

    def _set(self, threads: int) -> None:
        self.threads = threads
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


class AdaptiveThreads(Callback):
    """Lightning callback: a :class:`ThreadTuner` around every training batch."""

    def __init__(self, choices: Sequence[int], probe: int = 5, every: int = 200) -> None:
        self.tuner = ThreadTuner(choices, probe=probe, every=every)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Time the step (and switch threads while probing)."""
        self.tuner.start()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        """Record the step's time; after a probe, keep the fastest count."""
        self.tuner.stop()
