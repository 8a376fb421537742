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
"""

from __future__ import annotations

import os

import torch
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
    cores = available_cores() if cores is None else cores
    runs = concurrent_runs() if runs is None else runs
    share = max(1, cores // runs)
    return share if parallel or num_qubits >= SERIAL_BELOW_QUBITS else 1


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


def apply_threads(value: str | int, model: nn.Module) -> int:
    """Set torch's intra-op threads for ``model`` from the ``threads`` setting; returns them."""
    threads = parse_threads(value)
    if threads is None:
        parallel = any(getattr(m, "parallel_batch", False) for m in model.modules())
        threads = choose_threads(model_qubits(model), parallel=parallel)
    torch.set_num_threads(threads)
    return threads
