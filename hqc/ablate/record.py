"""Run records on disk: ``result.json`` per run (the schema the report reads) and ``fit.json``.

The run directory is the source of truth for the runner (resume) and the report (aggregation);
``hqc.ablate.plan`` lays it out as ``<root>/<cell>/seed<seed>/`` where ``<root>`` is
``--out`` or the matrix's ``root`` (default ``runs/ablate/<matrix name>``) and ``<cell>`` is
:attr:`hqc.ablate.design.Cell.name`. Each run directory holds:

- ``config.yaml``: the fully resolved LightningCLI config the child fits (``python -m hqc fit
  --config config.yaml``), written once before the first attempt;
- ``fit.json``: written by :class:`RecordFit` inside the child after its test pass;
- ``state.json``: attempts started so far and their wall seconds (the runner's bookkeeping);
- ``stdout.log`` / ``stderr.log``: the child's output, appended per attempt;
- ``checkpoints/`` (``last.ckpt`` resumes an interrupted run), ``csv/`` logs;
- ``result.json``: written atomically by the runner when the run has ended, and only then. A
  run directory without it is unfinished (it resumes); with it the run is never started again
  (a ``failed`` one only with ``--retry-failed``).

``result.json`` (:data:`SCHEMA` = 1), one flat object::

    {
      "schema": 1,
      "matrix": "qubit_sweep",              # the matrix name (also the W&B group)
      "run": "head-hybrid__qubits-4/seed0", # <cell>/seed<seed>, unique in the matrix
      "cell": "head-hybrid__qubits-4",
      "levels": {"head": "hybrid", "qubits": "4"},  # factor -> level name (strings), all factors
      "seed": 0,
      "status": "ok",                       # "ok" | "failed"
      "returncode": 0,                      # the last attempt's exit status (<0: killed by signal)
      "error": null,                        # failed: the stderr tail (last lines); ok: null
      "attempts": 1,                        # child processes started for this run
      "seconds": 41.2,                      # wall seconds of the child processes, all attempts
      "finished": "2026-12-04T13:40:00Z",   # UTC, when result.json was written
      # present when status == "ok" (from fit.json; null where the fit did not log it):
      "parameters": 214,                    # trainable parameters of the model
      "train_seconds": 30.5,                # training time, summed over resumed attempts
      "epochs": 40,                         # epochs trained
      "val_acc": 0.81,                      # best monitored val/acc (the checkpoint tested)
      "test_acc": 0.79, "test_f1": 0.78, "test_loss": 0.5   # every test/* metric as test_*
    }

A failed run has no metric keys. Read a record with :func:`read_result` (None: unfinished).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

SCHEMA = 1
RESULT_FILE = "result.json"
FIT_FILE = "fit.json"
STATE_FILE = "state.json"
CONFIG_FILE = "config.yaml"


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` atomically: a reader (or a resumed runner) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The object in ``path``, or None where there is none yet."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """A run's ``result.json``, or None while the run is unfinished."""
    return read_json(run_dir / RESULT_FILE)


class RecordFit(Callback):
    """Records parameters, training time and final metrics to ``<default_root_dir>/fit.json``.

    The training clock is part of the callback's checkpointed state, so a run resumed from
    ``last.ckpt`` reports the training time of the epochs it kept, not only of the last attempt.
    """

    def __init__(self) -> None:
        self.start = 0.0
        self.train_seconds = 0.0
        self.trained = False

    def state_dict(self) -> dict[str, float]:
        """Training seconds so far (saved in every checkpoint)."""
        return {"train_seconds": self.train_seconds + self._running()}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        """Continue the clock of the checkpoint this attempt resumes from.

        Testing the best checkpoint after training loads its state too; that must not turn
        the clock back.
        """
        if not self.trained:
            self.train_seconds = state_dict["train_seconds"]

    def _running(self) -> float:
        return time.perf_counter() - self.start if self.start else 0.0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the training clock."""
        self.start = time.perf_counter()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Stop it (test and checkpoint reload are not training)."""
        self.train_seconds += self._running()
        self.start, self.trained = 0.0, True

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Write the record once the best checkpoint has been tested."""
        metrics = trainer.callback_metrics
        best = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
        record = {
            "parameters": sum(p.numel() for p in pl_module.parameters() if p.requires_grad),
            "train_seconds": round(self.train_seconds, 3),
            "epochs": trainer.current_epoch,
            "val_acc": float(best) if best is not None else None,
            **{k.replace("/", "_"): float(v) for k, v in metrics.items() if k.startswith("test/")},
        }
        write_json(Path(trainer.default_root_dir) / FIT_FILE, record)
