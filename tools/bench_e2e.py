"""End-to-end timings of the paper protocol through hqc's own CLI (``python -m hqc fit``).

One command (bench venv; data in ``HQC_DATA_DIR`` or ``--data``)::

    python tools/bench_e2e.py                 # all runs, resumable
    python tools/bench_e2e.py --runs cached   # some of them

Runs, each a fresh ``hqc fit`` process (435 training sentences, batch 64 = 7 steps/epoch):

* ``cold``: configs/hybrid.yaml (torch backend), empty embedding cache: launch → first
  training step includes encoding all 9,613 SST-2 sentences once; 1 epoch.
* ``cached``: the same with the cache filled by ``cold``: launch → first step, and 5 epochs
  (the first epoch includes one-off warm-up; the steady epoch is the median of the others).
* ``qiskit``: configs/hybrid_qiskit.yaml (sQEs on torch, the core on TorchConnector +
  EstimatorQNN with the batched parameter shift), 3 epochs.
* ``torchconnector``: configs/hybrid.yaml with the core on ``TorchConnector(TorchQNNNetwork)``
  (``backend: torchconnector``), 5 epochs: the per-epoch ratio against ``cached``.
* ``qiskit_dev``: configs/hybrid_qiskit.yaml with ``--trainer.fast_dev_run=true``, process wall.
* ``projection14``: configs/projection.yaml with a 14-qubit head, 3 epochs.
* ``fit``: the whole ``python -m hqc fit --config configs/hybrid.yaml`` (40 epochs + test on
  9,101 sentences), exactly as a user runs it, with the cache filled: wall time, test accuracy.
* ``qiskit_fit``: the same for configs/hybrid_qiskit.yaml.

Epochs are timed by a Lightning callback (:class:`EpochTimer`) added with
``--trainer.callbacks+=bench_e2e.EpochTimer``; results go to ``tools/results/e2e.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import (
    RESULTS_DIR,
    ROOT,
    ResultStore,
    default_threads,
    fmt_time,
    machine_info,
    md_table,
    replace_block,
    run_child,
    thread_env,
    wait_for_quiet,
)

try:  # the callback needs Lightning; the parent only needs it in the child process
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[assignment,misc]

RUNS: dict[str, dict[str, Any]] = {
    "cold": {"config": "configs/hybrid.yaml", "epochs": 1, "cold": True},
    "cached": {"config": "configs/hybrid.yaml", "epochs": 5},
    "qiskit": {"config": "configs/hybrid_qiskit.yaml", "epochs": 3},
    "torchconnector": {
        "config": "configs/hybrid.yaml",
        "epochs": 5,
        "extra": ["--model.init_args.core.init_args.backend=torchconnector"],
    },
    "qiskit_dev": {
        "config": "configs/hybrid_qiskit.yaml",
        "whole": True,
        "extra": ["--trainer.fast_dev_run=true"],
    },
    "projection14": {
        "config": "configs/projection.yaml",
        "epochs": 3,
        "extra": ["--model.init_args.projection.init_args.out_features", "14"],
    },
    "fit": {"config": "configs/hybrid.yaml", "whole": True},
    "qiskit_fit": {"config": "configs/hybrid_qiskit.yaml", "whole": True},
}


class EpochTimer(Callback):
    """Times training steps, epochs and validation; writes JSON to ``$BENCH_E2E_OUT``.

    ``$BENCH_LAUNCH_T`` (``time.time()`` when the parent launched the process) gives the
    launch → first-training-step time.
    """

    def __init__(self) -> None:
        super().__init__()
        self.launch = float(os.environ.get("BENCH_LAUNCH_T", time.time()))
        self.out = os.environ.get("BENCH_E2E_OUT", "e2e_timer.json")
        self.data: dict[str, Any] = {"epochs": [], "first_step_s": None}
        self._t: dict[str, float] = {}

    def _save(self) -> None:
        Path(self.out).write_text(json.dumps(self.data, indent=1))

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Start an epoch record."""
        self.data["epochs"].append({"steps": [], "sizes": [], "val_s": None})
        self._t["epoch"] = time.perf_counter()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, idx: int) -> None:
        """Launch → first step, once; start a step."""
        if self.data["first_step_s"] is None:
            self.data["first_step_s"] = time.time() - self.launch
            self._save()  # a step that never ends (killed) still shows when it began
        self._t["step"] = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, idx: int
    ) -> None:
        """Step time (forward, backward, optimizer) and batch size."""
        epoch = self.data["epochs"][-1]
        epoch["steps"].append(time.perf_counter() - self._t["step"])
        epoch["sizes"].append(len(batch["text"]))
        epoch["train_s"] = time.perf_counter() - self._t["epoch"]
        self._save()

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Start timing validation."""
        self._t["val"] = time.perf_counter()

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Validation time of the current epoch (sanity check excluded)."""
        if trainer.sanity_checking or not self.data["epochs"]:
            return
        self.data["epochs"][-1]["val_s"] = time.perf_counter() - self._t["val"]
        self._save()

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Whole epoch: steps, validation and epoch-end hooks before this one."""
        self.data["epochs"][-1]["epoch_s"] = time.perf_counter() - self._t["epoch"]
        self._save()

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        """Test metrics of the final evaluation."""
        self.data["test"] = {
            k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")
        }
        self._save()


def _test_accuracy(root: Path) -> float | None:
    """``test/acc`` from the CSV logger's metrics file under ``root``."""
    for path in sorted(root.glob("csv/version_*/metrics.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                if row.get("test/acc"):
                    return float(row["test/acc"])
    return None


def run_one(name: str, args: argparse.Namespace, cache: Path, work: Path) -> dict[str, Any]:
    """Launch one ``hqc fit`` run and summarise it."""
    spec = RUNS[name]
    root = work / name
    shutil.rmtree(root, ignore_errors=True)
    timer_out = work / f"{name}.timer.json"
    timer_out.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "hqc",
        "fit",
        "--config",
        spec["config"],
        f"--trainer.default_root_dir={root}",
    ]
    if args.accelerator:
        cmd.append(f"--trainer.accelerator={args.accelerator}")
    if not spec.get("whole"):
        cmd += [
            "--trainer.callbacks+=bench_e2e.EpochTimer",
            f"--trainer.max_epochs={spec['epochs']}",
        ]
    cmd += spec.get("extra", [])
    env = thread_env(args.threads)
    env["HQC_CACHE_DIR"] = str(cache)
    env["HQC_DATA_DIR"] = args.data
    env["BENCH_E2E_OUT"] = str(timer_out)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tools"), env.get("PYTHONPATH", "")])
    quiet = wait_for_quiet(max_wait_s=args.quiet_wait)
    env["BENCH_LAUNCH_T"] = repr(time.time())
    result = run_child(cmd, args.hard_limit, args.mem_limit_gib * 1024, env)
    record: dict[str, Any] = {
        "command": " ".join(cmd[1:]),
        "status": result.status,
        "wall_s": result.wall_s,
        "peak_rss_mb": result.peak_rss_mb,
        "others_cores": result.others_cores,
        "others_before": quiet,
        "threads": args.threads,
        "cache_dir_empty": bool(spec.get("cold")),
    }
    if result.status != "ok":
        record["tail"] = result.tail[-3000:]
    if timer_out.exists():
        timer = json.loads(timer_out.read_text())
        record["timer"] = timer
        record["first_step_s"] = timer["first_step_s"]
        epochs = [e for e in timer["epochs"] if e["steps"]]
        if epochs:
            record["epoch1_train_s"] = sum(epochs[0]["steps"])
            record["epoch1_s"] = epochs[0].get("epoch_s")
            later = epochs[1:] or epochs
            record["steady_train_s"] = statistics.median(sum(e["steps"]) for e in later)
            record["steady_epoch_s"] = statistics.median(
                e.get("epoch_s") or sum(e["steps"]) for e in later
            )
            vals = [e["val_s"] for e in later if e.get("val_s") is not None]
            record["steady_val_s"] = statistics.median(vals) if vals else None
    record["test_acc"] = _test_accuracy(root)
    if record["test_acc"] is None and timer_out.exists():
        record["test_acc"] = record.get("timer", {}).get("test", {}).get("test/acc")
    return record


def render(store: ResultStore) -> str:
    """The end-to-end table, also written into BENCHMARKS.md."""
    runs = store.data.get("runs", {})
    rows = []
    labels = {
        "cold": "hybrid.yaml, torch, empty cache (encodes SST-2)",
        "cached": "hybrid.yaml, torch, cached embeddings",
        "qiskit": "hybrid_qiskit.yaml (core: TorchConnector + EstimatorQNN), cached",
        "torchconnector": "hybrid.yaml, core `backend: torchconnector`, cached",
        "qiskit_dev": "`hqc fit --config configs/hybrid_qiskit.yaml --trainer.fast_dev_run=true`",
        "projection14": "projection.yaml, 14-qubit head, cached",
        "fit": "whole `hqc fit --config configs/hybrid.yaml` (40 epochs + test), cached",
        "qiskit_fit": "whole `hqc fit --config configs/hybrid_qiskit.yaml` (40 epochs + test)",
    }
    for name in RUNS:
        r = runs.get(name)
        if r is None:
            continue
        epoch = fmt_time(r.get("epoch1_train_s"))
        steady = (
            f"{fmt_time(r.get('steady_train_s'))} + val {fmt_time(r.get('steady_val_s'))}"
            if r.get("steady_train_s")
            else "–"
        )
        acc = f"{100 * r['test_acc']:.2f} %" if r.get("test_acc") is not None else "–"
        rows.append(
            [
                labels[name],
                r["status"],
                fmt_time(r.get("first_step_s")),
                epoch,
                steady,
                fmt_time(r["wall_s"]),
                f"{r['peak_rss_mb']:.0f}",
                acc,
            ]
        )
    text = md_table(
        [
            "run",
            "status",
            "launch → 1st step",
            "1st epoch (7 steps)",
            "steady epoch: steps + val",
            "process wall",
            "peak RSS MiB",
            "test acc",
        ],
        rows,
    )
    replace_block("e2e", text)
    (RESULTS_DIR / "e2e.md").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> None:
    """Run the requested end-to-end runs in order (skipping those already recorded)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default=",".join(RUNS), help=f"subset of {list(RUNS)}")
    parser.add_argument("--data", default=os.environ.get("HQC_DATA_DIR"), help="data folder")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--accelerator", default="", help="Lightning accelerator (e.g. gpu)")
    parser.add_argument("--hard-limit", type=float, default=3600.0)
    parser.add_argument("--mem-limit-gib", type=float, default=12.0)
    parser.add_argument("--quiet-wait", type=float, default=600.0)
    parser.add_argument("--rerun", action="store_true", help="re-run recorded runs")
    parser.add_argument("--render", action="store_true", help="only render the table")
    args = parser.parse_args(argv)
    store = ResultStore(RESULTS_DIR / "e2e.json")
    if args.render:
        print(render(store))
        return
    if args.data is None:
        parser.error("no data: set HQC_DATA_DIR or --data (e.g. ../shared/data/sst2)")
    store.data.setdefault("runs", {})
    store.data["machine"] = machine_info(args.threads)
    work = Path(tempfile.gettempdir()) / "hqc_bench_e2e"
    cache = work / "cache"
    for name in args.runs.split(","):
        if name in store.data["runs"] and not args.rerun:
            continue
        if RUNS[name].get("cold"):
            shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True, exist_ok=True)
        record = run_one(name, args, cache, work)
        store.data["runs"][name] = record
        store.save()
        print(
            f"{name}: {record['status']} wall {record['wall_s']:.1f} s, first step "
            f"{record.get('first_step_s')}, epoch1 {record.get('epoch1_train_s')}, steady "
            f"{record.get('steady_train_s')}, test acc {record.get('test_acc')}, others "
            f"{record['others_cores']:.2f}",
            flush=True,
        )
    print(render(store))


if __name__ == "__main__":
    main()
