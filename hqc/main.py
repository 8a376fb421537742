"""Command-line entry point: ``python -m hqc fit --config configs/hybrid.yaml``.

``main(args=None)`` runs in-process (tests call ``main([...])``), the torchgeo pattern.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningCLI

from hqc.callbacks import ConfigSaver, PredictionWriter
from hqc.errors import UserError, run_guarded
from hqc.threads import CONCURRENT_RUNS_ENV, apply_threads

#: ``ckpt_path`` values Lightning resolves itself rather than reading as a file path.
CKPT_ALIASES = ("best", "last", "hpc")

THREADS_HELP = (
    "Torch threads: 'auto' (1 below 12 qubits, else this run's share of the CPU-affinity "
    f"cores; a runner starting k fits at once sets {CONCURRENT_RUNS_ENV}=k; where that is over "
    "1, training re-times 1 thread against it every 200 steps and keeps the faster) "
    "or a number (fixed)."
)


class HQCLI(LightningCLI):
    """LightningCLI with the kit's defaults: checkpoints, CSV logs, predictions, test after fit."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        """Always-on callbacks, configurable as ``checkpoint.*`` and ``prediction.*``."""
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best-epoch{epoch:03d}",
                "checkpoint.auto_insert_metric_name": False,
                # Lightning 2.6 writes save_last only when a best checkpoint improves; a rolling
                # top-1 of the newest epoch named "last" is what `--ckpt_path last` must find.
                "last_checkpoint.filename": "last",
                "last_checkpoint.enable_version_counter": False,
            }
        )
        parser.add_lightning_class_args(PredictionWriter, "prediction")
        parser.add_argument("--threads", type=int | str, default="auto", help=THREADS_HELP)
        # K is the data's, never a second setting: any K-class folder trains as it is
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", apply_on="instantiate"
        )

    def instantiate_classes(self) -> None:
        """Instantiate, then set torch's threads from the ``threads`` setting (hqc.threads)."""
        super().instantiate_classes()
        config = self.config[self.subcommand] if self.subcommand else self.config
        tuner = apply_threads(config.threads, self.model)
        if tuner is not None:
            self.trainer.callbacks.append(tuner)

    def before_instantiate_classes(self) -> None:
        """Fixed checkpoint folder per run directory (``--ckpt_path last`` resumes); CSV logs."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        _check_ckpt_path(config.get("ckpt_path"))
        root = config.trainer.default_root_dir or "runs"
        config.trainer.default_root_dir = root
        for key in ("checkpoint", "last_checkpoint"):
            if config[key].dirpath is None:
                config[key].dirpath = str(Path(root) / "checkpoints")
        if config.trainer.logger in (None, True):
            config.trainer.logger = {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": root, "name": "csv"},
            }

    def after_fit(self) -> None:
        """Evaluate the best checkpoint on the test split, so every fit reports test accuracy."""
        checkpoint = self.trainer.checkpoint_callback
        ckpt = "best" if checkpoint is not None and checkpoint.best_model_path else None
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt)


def _check_ckpt_path(ckpt_path: str | None) -> None:
    """A ``ckpt_path`` naming a local file must exist: say so before anything is built."""
    if ckpt_path is None or ckpt_path in CKPT_ALIASES or ":" in ckpt_path.split("/")[0]:
        return  # unset, an alias, or a "registry:..."/"s3://..." location Lightning resolves
    if not Path(ckpt_path).is_file():
        raise UserError(f"ckpt_path={ckpt_path}: no such checkpoint file")


def main(args: ArgsType = None, run: bool = True, cli_class: type[HQCLI] = HQCLI) -> HQCLI:
    """Run the CLI on ``args`` (default: ``sys.argv``); returns the CLI for inspection.

    With ``run=False`` the config (without a subcommand) is only parsed and instantiated.
    ``cli_class`` is a subclass to use instead (``hqc.ablate`` resolves configs with one).
    """
    os.environ.setdefault("WANDB_MODE", "offline")
    return cli_class(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=ConfigSaver,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"enable_model_summary": False},
        args=args,
        run=run,
    )


def cli() -> None:
    """The ``hqc`` console script and ``python -m hqc``: :func:`main`, user errors as one line."""
    run_guarded(main)
