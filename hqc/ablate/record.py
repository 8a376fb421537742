"""The callback every matrix run carries: what the runner cannot see from outside the child.

It writes ``fit.json`` in the run directory (trainable parameters, training seconds of this
attempt, best validation accuracy, test metrics of the best checkpoint); the runner folds it
into ``result.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

FIT_FILE = "fit.json"


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` atomically: a reader (or a resumed runner) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class RecordFit(Callback):
    """Records parameters, training time and final metrics to ``<default_root_dir>/fit.json``."""

    def __init__(self) -> None:
        self.start = 0.0
        self.train_seconds = 0.0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the training clock."""
        self.start = time.perf_counter()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Stop it (test and checkpoint reload are not training)."""
        self.train_seconds = time.perf_counter() - self.start

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
