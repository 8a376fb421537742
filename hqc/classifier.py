"""The one LightningModule: encoder → projection → angle encoder → core → readout.

Each stage is a constructor argument typed by a base class from :mod:`hqc.stages`, so a YAML
``class_path``/``init_args`` swaps any of them — an ablation is a component substitution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from hqc.errors import UserError
from hqc.quantum.execution import Execution
from hqc.quantum.layer import QuantumLayer
from hqc.stages import AngleEncoder, Core, Encoder, Identity, Projection, Readout

STAGES = ("encoder", "projection", "angle_encoder", "core", "readout")


class Classifier(LightningModule):
    """Sentence classifier assembled from swappable stages.

    Args:
        encoder: sentences → embeddings (e.g. :class:`hqc.encoder.SentenceEncoder`).
        core: the head's trainable heart (a re-upload PQC or an MLP).
        projection: embedding → core width (sQEs, a linear map); None: identity.
        angle_encoder: features → rotation angles; None: identity (classical cores).
        readout: core outputs → class logits; None: identity (cores that emit logits).
        num_classes: number of classes; the CLI sets it from the data.
        optimizer: optimizer factory (``class_path``/``init_args`` in YAML).
        scheduler: optional learning-rate scheduler factory.
        scheduler_monitor: the logged metric a ``ReduceLROnPlateau`` scheduler watches.
        execution: shots, seed and noise of every quantum layer in the model (a user's own
            stage built on :class:`~hqc.quantum.layer.QuantumLayer` included); None: exact.
    """

    def __init__(
        self,
        encoder: Encoder,
        core: Core,
        projection: Projection | None = None,
        angle_encoder: AngleEncoder | None = None,
        readout: Readout | None = None,
        num_classes: int = 2,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_monitor: str = "val/loss",
        execution: Execution | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=[] if self._cli_config() else list(STAGES))
        self.encoder = encoder
        self.projection = projection or Identity()
        self.angle_encoder = angle_encoder or Identity()
        self.core = core
        self.readout = readout or Identity()
        self.num_classes = num_classes
        width = encoder.out_features
        for name in STAGES[1:]:
            stage = getattr(self, name)
            width = stage.build(width, num_classes)
        if width != num_classes:
            raise UserError(
                f"the pipeline ends with width {width} but num_classes={num_classes}: "
                "the readout (or a core that emits logits) must output one value per class"
            )
        self.set_execution(execution or Execution())
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scheduler_monitor = scheduler_monitor
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "f1": MulticlassF1Score(num_classes, average="macro"),
            }
        )
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def set_execution(self, execution: Execution) -> None:
        """Run every QuantumLayer with ``execution``; each draws its own shot stream."""
        self.execution = execution
        layers = [m for m in self.modules() if isinstance(m, QuantumLayer)]
        for stream, layer in enumerate(layers):
            layer.set_execution(execution, stream)

    @staticmethod
    def _cli_config() -> bool:
        """True under LightningCLI, which saves the stages' YAML config as hyperparameters."""
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters

        return _given_hyperparameters.get() is not None

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Class logits ``(B, classes)`` for a batch of sentences, stage by stage."""
        x = self.encoder(texts).to(self.device)
        x = self.projection(x)
        x = self.angle_encoder(x)
        x = self.core(x)
        return self.readout(x)

    def setup(self, stage: str) -> None:
        """Check the data's classes and let a frozen encoder embed every split once."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if datamodule is None:
            return
        if datamodule.num_classes != self.num_classes:
            raise UserError(
                f"model.num_classes={self.num_classes} but the data has "
                f"{datamodule.num_classes} classes: set model.init_args.num_classes"
            )
        for name in ("train_data", "val_data", "test_data", "predict_data"):
            split = getattr(datamodule, name, None)  # one cache entry per split
            if split is not None:
                self.encoder.warm(split.texts, self.trainer.strategy.root_device)

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        logits = self(batch["text"])
        loss = nn.functional.cross_entropy(logits, batch["label"])
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(logits, batch["label"])
        batch_size = len(batch["text"])
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=batch_size)
        # a Metric logged per step needs forward(), not update(): log epoch values in every stage
        self.log_dict(
            metrics, prog_bar=stage != "train", on_step=False, on_epoch=True, batch_size=batch_size
        )
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Cross-entropy on one batch."""
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Validation loss and metrics (model selection uses ``val/acc``)."""
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Held-out loss and metrics."""
        self._step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Class probabilities ``(B, classes)``."""
        return self(batch["text"]).softmax(-1)

    def configure_optimizers(self) -> Any:
        """One optimizer; a trainable encoder gets its own learning rate as a parameter group."""
        head = [p for name, p in self.named_parameters() if not name.startswith("encoder.")]
        groups: list[dict[str, Any]] = [{"params": head}]
        encoder_params = [p for p in self.encoder.parameters() if p.requires_grad]
        if encoder_params:
            lr = getattr(self.encoder, "lr", None)
            groups.append({"params": encoder_params, **({"lr": lr} if lr is not None else {})})
        optimizer = self.optimizer(groups)
        if self.scheduler is None:
            return optimizer
        scheduler = {"scheduler": self.scheduler(optimizer), "monitor": self.scheduler_monitor}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def parameter_table(self) -> str:
        """Trainable and frozen parameters per stage, as a text table."""
        rows = [("stage", "class", "trainable", "frozen")]
        total = 0
        for name in STAGES:
            stage = getattr(self, name)
            trainable = sum(p.numel() for p in stage.parameters() if p.requires_grad)
            frozen = sum(p.numel() for p in stage.parameters() if not p.requires_grad)
            if isinstance(stage, Encoder):
                frozen += sum(p.numel() for p in stage.held_out_parameters())
            total += trainable
            rows.append((name, type(stage).__name__, f"{trainable:,}", f"{frozen:,}"))
        rows.append(("total", "", f"{total:,}", ""))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
        return "\n".join(lines)

    def on_fit_start(self) -> None:
        """Print the parameter table so every run states its head size."""
        rank_zero_info("Trainable parameters per stage:\n" + self.parameter_table())
