"""Shared helpers of the ``tools/bench_*.py`` scripts: circuit, timing, memory, results, tables.

Every benchmark builds the paper's circuit the same way (:func:`paper_circuit`), times with
:func:`time_calls` (warm-up, then a median over repeats within a time cap), measures peak
memory with :func:`reset_peak_rss` / :func:`peak_rss_mb` (Linux ``VmHWM``, reset through
``/proc/self/clear_refs``), keeps results in resumable JSON files (:class:`ResultStore`), runs
cells in watched subprocesses (:func:`run_child`) and renders markdown tables into
``BENCHMARKS.md`` between markers (:func:`replace_block`).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "tools" / "results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"

# ---------------------------------------------------------------------- the circuit


@dataclass
class PaperCircuit:
    """The benchmark circuit: re-upload PQC, M=2 layers, C=2, N=2 re-uploads, Z on qubit 0."""

    circuit: Any
    inputs: Any
    weights: Any
    observables: list[Any]

    @property
    def num_qubits(self) -> int:
        """Q."""
        return int(self.circuit.num_qubits)

    def gate_counts(self) -> dict[str, int]:
        """Gates by name (``cx``, ``ry``)."""
        return {str(k): int(v) for k, v in self.circuit.count_ops().items()}

    def num_gates(self) -> int:
        """Total number of gates."""
        return sum(self.gate_counts().values())


def paper_circuit(num_qubits: int) -> PaperCircuit:
    """The paper's second module on ``num_qubits`` qubits, as built by hqc."""
    from hqc.quantum.circuits import reupload_circuit, z_observables

    circuit, inputs, weights = reupload_circuit(
        num_qubits,
        reuploads=2,
        layers=2,
        connectivity=2,
        ansatz="long_range",
        shared=False,
        encoding="ry",
    )
    return PaperCircuit(circuit, inputs, weights, z_observables(num_qubits, (0,)))


def circuit_ops(paper: PaperCircuit) -> list[tuple[str, tuple[int, ...], str, int]]:
    """The circuit as ``(gate, qubits, source, index)``; source ``x`` (input), ``w`` or ``-``.

    Lets other frameworks (PennyLane) rebuild exactly the same gate sequence.
    """
    circuit = paper.circuit
    input_index = {p: i for i, p in enumerate(paper.inputs)}
    weight_index = {p: i for i, p in enumerate(paper.weights)}
    ops = []
    for instruction in circuit.data:
        name = instruction.operation.name
        qubits = tuple(circuit.find_bit(q).index for q in instruction.qubits)
        if name == "cx":
            ops.append((name, qubits, "-", -1))
        elif name == "ry":
            (param,) = instruction.operation.params
            if param in input_index:
                ops.append((name, qubits, "x", input_index[param]))
            elif param in weight_index:
                ops.append((name, qubits, "w", weight_index[param]))
            else:
                raise ValueError(f"unexpected RY angle {param!r}: only plain parameters")
        else:
            raise ValueError(f"unexpected gate {name!r} in the benchmark circuit")
    return ops


def fixed_values(num_qubits: int, batch: int, num_weights: int, seed: int = 0) -> tuple[Any, Any]:
    """Inputs ``(batch, Q)`` and weights ``(n_w,)``, uniform in [-π, π), float64, seeded."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, num_qubits, generator=gen, dtype=torch.float64) * 2 - 1) * torch.pi
    w = (torch.rand(num_weights, generator=gen, dtype=torch.float64) * 2 - 1) * torch.pi
    return x, w


# ---------------------------------------------------------------------- machine and threads


def default_threads() -> int:
    """Threads a benchmark uses unless told (``--threads``): every core this process may use."""
    from hqc.threads import available_cores

    return available_cores()


def thread_env(threads: int) -> dict[str, str]:
    """Environment for a child process limited to ``threads`` threads (torch, OpenMP, BLAS)."""
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    env.setdefault("WANDB_MODE", "offline")
    return env


def set_threads(threads: int) -> None:
    """``torch.set_num_threads`` (and interop threads where still possible)."""
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set: interop threads can be set only once
        pass


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions (``-`` where a package is missing)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


BENCH_PACKAGES = (
    "torch",
    "qiskit",
    "qiskit-aer",
    "qiskit-machine-learning",
    "pennylane",
    "pennylane-lightning",
    "lightning",
    "numpy",
    "psutil",
)


def machine_info(threads: int) -> dict[str, Any]:
    """CPU model, cores, memory, load, versions and the thread setting of a run."""
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "threads": threads,
        "loadavg": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "versions": package_versions(BENCH_PACKAGES),
    }


HQC_SOURCES = ("hqc/quantum/torch_qnn/*.py", "hqc/quantum/layer.py", "hqc/quantum/circuits.py")


def hqc_digest() -> str:
    """Short digest of the hqc sources under test (they change while colleagues work)."""
    import hashlib

    h = hashlib.sha256()
    for pattern in HQC_SOURCES:
        for path in sorted(ROOT.glob(pattern)) or [None]:
            h.update(path.read_bytes() if path is not None else b"-")
    return h.hexdigest()[:10]


# ---------------------------------------------------------------------- memory


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def rss_mb() -> float:
    """Current resident set size of this process, MiB."""
    return _status_kb("VmRSS") / 1024


def reset_peak_rss() -> None:
    """Reset this process's RSS high-water mark (``VmHWM``) to its current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """RSS high-water mark since the last :func:`reset_peak_rss`, MiB."""
    return _status_kb("VmHWM") / 1024


# ---------------------------------------------------------------------- timing


def sync(device: str) -> None:
    """Wait for queued device work (no-op on CPU)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


@dataclass
class Timing:
    """Result of :func:`time_calls`: median seconds and how it was obtained."""

    median_s: float
    times_s: list[float]
    warmup_s: float
    over_cap: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "median_s": self.median_s,
            "times_s": self.times_s,
            "warmup_s": self.warmup_s,
            "repeats": len(self.times_s),
            "over_cap": self.over_cap,
        }


def time_calls(
    fn: Callable[[], Any],
    cap_s: float,
    max_repeats: int = 7,
    min_repeats: int = 1,
    device: str = "cpu",
) -> Timing:
    """Warm up once, then time ``fn`` repeatedly; the median is the result.

    Repeats stop at ``max_repeats`` or once ``cap_s`` (warm-up included) would be exceeded,
    but at least ``min_repeats`` run. When the warm-up alone exceeds the cap, it is the only
    measurement (``over_cap``: a cold single run, reported as such).
    """
    start = time.perf_counter()
    fn()
    sync(device)
    warm = time.perf_counter() - start
    if warm > cap_s:
        return Timing(warm, [warm], warm, True)
    times: list[float] = []
    while len(times) < max_repeats:
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        spent = warm + sum(times)
        if len(times) >= min_repeats and spent + statistics.median(times) > cap_s:
            break
    return Timing(statistics.median(times), times, warm, False)


# ---------------------------------------------------------------------- results


class ResultStore:
    """A JSON file of ``{key: record}``; written atomically after every put (resumable)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        if path.exists():
            self.data = json.loads(path.read_text())

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str) -> Any:
        """The record at ``key`` or None."""
        return self.data.get(key)

    def put(self, key: str, record: Any) -> None:
        """Store and write through."""
        self.data[key] = record
        self.save()

    def drop(self, keys: Iterable[str]) -> None:
        """Forget ``keys`` (to re-run them)."""
        for key in list(keys):
            self.data.pop(key, None)
        self.save()

    def save(self) -> None:
        """Atomic write (a killed run never leaves a torn file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.path)


def emit(record: dict[str, Any]) -> None:
    """A child's result line on stdout (prefixed, so other prints do not confuse the parent)."""
    print("@@RESULT " + json.dumps(record), flush=True)


def _busy_cpu_s() -> float:
    """CPU seconds spent busy by the whole machine so far (all cores)."""
    import psutil

    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def _tree_cpu_s(proc: Any) -> float:
    """CPU seconds of ``proc`` and its live children (psutil.Process)."""
    import psutil

    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def others_load(seconds: float = 1.0) -> float:
    """Cores kept busy by other processes over ``seconds`` (this process included, ~0)."""
    import psutil

    me = psutil.Process()
    busy0, mine0 = _busy_cpu_s(), _tree_cpu_s(me)
    time.sleep(seconds)
    return max(0.0, (_busy_cpu_s() - busy0) - (_tree_cpu_s(me) - mine0)) / seconds


def wait_for_quiet(threshold: float = 0.25, max_wait_s: float = 600.0) -> float:
    """Wait until other processes use under ``threshold`` cores (at most ``max_wait_s``).

    Returns the last measured load of others. Other engineers run test suites on this
    2-core machine: a benchmark thread descheduled at a barrier costs a scheduler quantum.
    """
    deadline = time.monotonic() + max_wait_s
    load = others_load()
    while load > threshold and time.monotonic() < deadline:
        time.sleep(4.0)
        load = others_load()
    return load


@dataclass
class ChildResult:
    """What :func:`run_child` saw: records, how it ended, its peak RSS and its output tail."""

    records: list[dict[str, Any]]
    status: str  # ok | timeout | memory | error
    returncode: int | None
    peak_rss_mb: float
    wall_s: float
    tail: str
    others_cores: float = 0.0
    """Average cores used by other processes while the child ran (disturbance)."""


def run_child(
    args: Sequence[str],
    timeout_s: float,
    mem_limit_mb: float,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
) -> ChildResult:
    """Run ``args``; collect ``@@RESULT`` lines; kill it past ``timeout_s`` or ``mem_limit_mb``.

    The RSS of the child (and its children) is polled every 50 ms with psutil, so a cell that
    would exhaust the machine's memory (shared with other users) is stopped and reported.
    """
    import psutil

    start = time.perf_counter()
    busy0 = _busy_cpu_s()
    parent = psutil.Process()
    parent0 = parent.cpu_times()
    proc = subprocess.Popen(
        list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
        bufsize=1,
    )
    records: list[dict[str, Any]] = []
    tail: list[str] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("@@RESULT "):
                records.append(json.loads(line[len("@@RESULT ") :]))
            else:
                tail.append(line)
                del tail[:-40]

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    status, peak, child_cpu = "ok", 0.0, 0.0
    ps = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            child_cpu = max(child_cpu, _tree_cpu_s(ps))
        except psutil.Error:
            pass
        try:
            rss = ps.memory_info().rss + sum(
                c.memory_info().rss for c in ps.children(recursive=True)
            )
        except psutil.Error:
            rss = 0
        peak = max(peak, rss / 2**20)
        if peak > mem_limit_mb:
            status = "memory"
            proc.kill()
            break
        if time.perf_counter() - start > timeout_s:
            status = "timeout"
            proc.kill()
            break
        time.sleep(0.05)
    proc.wait()
    wall = time.perf_counter() - start
    parent1 = parent.cpu_times()
    child_cpu = max(
        child_cpu,
        parent1.children_user
        + parent1.children_system
        - parent0.children_user
        - parent0.children_system,
    )
    mine = parent1.user + parent1.system - parent0.user - parent0.system
    others = max(0.0, _busy_cpu_s() - busy0 - child_cpu - mine) / max(wall, 1e-9)
    thread.join(timeout=5)
    if status == "ok" and proc.returncode != 0:
        status = "error"
    return ChildResult(records, status, proc.returncode, peak, wall, "".join(tail), others)


# ---------------------------------------------------------------------- rendering


def fmt_time(seconds: float | None) -> str:
    """Compact human time: µs/ms/s."""
    if seconds is None:
        return "–"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    if seconds >= 100:
        return f"{seconds:,.0f} s"
    return f"{seconds:.3g} s"


def fmt_ratio(ratio: float | None) -> str:
    """``×`` ratio with sensible digits."""
    if ratio is None:
        return "–"
    if ratio >= 100:
        return f"{ratio:,.0f}×"
    return f"{ratio:.3g}×"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def replace_block(name: str, content: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace the text between ``<!-- begin:NAME -->`` and ``<!-- end:NAME -->`` in ``path``.

    A missing block is appended at the end, so a fresh file fills in.
    """
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{content.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def python_for_bench() -> str:
    """The interpreter running this script (run the benchmarks with the bench venv's)."""
    return sys.executable
