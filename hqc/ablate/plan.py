"""The matrix's runs: every design cell × seed, its directory and its hqc arguments.

A run's arguments are the base ``--config``s, each factor's level (fragments, dotted settings,
a matched parameter count), the matrix's ``args``, then what the runner owns: the seed (weights
and the paper split's draw), the run directory and the :class:`~hqc.ablate.record.RecordFit`
callback. :func:`resolved_config` merges them into the one config the child fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from hqc.ablate.design import Cell, cells
from hqc.ablate.matrix import Matrix
from hqc.ablate.resolve import resolve, setting, trainable_parameters

WANDB_LOGGER = "lightning.pytorch.loggers.WandbLogger"


@dataclass(frozen=True)
class Run:
    """One fit of the matrix: a cell at a seed, in its own directory."""

    cell: Cell
    seed: int
    directory: Path

    @property
    def id(self) -> str:
        """``<cell>/seed<seed>``: unique in the matrix, the run directory below the root."""
        return f"{self.cell.name}/seed{self.seed}"


def root(matrix: Matrix, out: str | Path | None = None) -> Path:
    """Where the matrix's runs live: ``out``, else the matrix's ``root`` (absolute)."""
    return Path(out if out is not None else matrix.root).resolve()


def runs(matrix: Matrix, out: str | Path | None = None) -> list[Run]:
    """Every run in order: cells in design order, each at every seed."""
    base = root(matrix, out)
    return [
        Run(cell, seed, base / cell.name / f"seed{seed}")
        for cell in cells(matrix)
        for seed in matrix.seeds
    ]


def cell_args(matrix: Matrix, cell: Cell) -> tuple[str, ...]:
    """The hqc arguments of a cell (no seed, directory or runner callback)."""
    args = [f"--config={p}" for p in matrix.base]
    for factor, name in cell.levels.items():
        level = matrix.factors[factor][name]
        args += [f"--config={p}" for p in level.configs]
        args += [setting(k, v) for k, v in level.settings.items()]
        if level.match is not None:
            matched = Cell({**cell.levels, factor: level.match.level})
            count = trainable_parameters(cell_args(matrix, matched), _where(matrix, matched))
            args.append(setting(level.match.key, count))
    return (*args, *matrix.args)


def run_args(matrix: Matrix, run: Run) -> tuple[str, ...]:
    """A run's full hqc arguments: its cell's, then the seed, directory and record callback."""
    return (
        *cell_args(matrix, run.cell),
        f"--seed_everything={run.seed}",
        f"--data.init_args.seed={run.seed}",
        f"--trainer.default_root_dir={run.directory}",
        "--trainer.enable_progress_bar=false",
        "--trainer.callbacks+=hqc.ablate.record.RecordFit",
    )


def resolved_config(matrix: Matrix, run: Run) -> str:
    """The run's merged config as YAML; a W&B logger gets the matrix as group, levels as tags."""
    text = resolve(run_args(matrix, run), _where(matrix, run.cell))
    config = yaml.safe_load(text)
    loggers = config["trainer"].get("logger")
    wandb = [
        lg
        for lg in (loggers if isinstance(loggers, list) else [loggers])
        if isinstance(lg, dict) and lg.get("class_path") == WANDB_LOGGER
    ]
    if not wandb:
        return text
    for logger in wandb:
        logger.setdefault("init_args", {}).update(
            group=matrix.name,
            name=f"{matrix.name}/{run.id}",
            tags=[*(f"{f}={lv}" for f, lv in run.cell.levels.items()), f"seed={run.seed}"],
        )
    return yaml.safe_dump(config, sort_keys=False)


def _where(matrix: Matrix, cell: Cell) -> str:
    return f"{matrix.path}: cell {cell.name}"
