"""Callbacks the CLI wires in: prediction files and the resolved config on W&B runs."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger


class PredictionWriter(BasePredictionWriter):
    """Writes ``predict`` results as CSV: text, predicted label, one probability per class.

    Args:
        output: CSV path; default ``<trainer.default_root_dir>/predictions.csv``.
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output = output

    def write_on_epoch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        predictions: Any,
        batch_indices: Any,
    ) -> None:
        """Write every prediction at once, atomically (a partial file is never left behind)."""
        dataloaders = trainer.predict_dataloaders
        loader = dataloaders[0] if isinstance(dataloaders, list) else dataloaders
        texts = [t for batch in loader for t in batch["text"]]
        probs = torch.cat(list(predictions)).float().cpu()
        path = Path(self.output or Path(trainer.default_root_dir) / "predictions.csv")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label", *(f"prob_{k}" for k in range(probs.shape[1]))])
            labels = probs.argmax(1).tolist()
            for text, label, row in zip(texts, labels, probs.tolist(), strict=True):
                writer.writerow([text, label, *(f"{p:.6f}" for p in row)])
        os.replace(tmp, path)
        print(f"Wrote {len(texts)} predictions to {path}")


class ConfigSaver(SaveConfigCallback):
    """Saves ``config.yaml`` as usual and attaches the resolved config to a W&B run."""

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Push the whole resolved config into the W&B run's config."""
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                config = self.parser.dump(self.config, skip_none=False, format="json")
                logger.experiment.config.update(json.loads(config), allow_val_change=True)
