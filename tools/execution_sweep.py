"""What finite shots and gate noise cost a trained head: its test accuracy under each execution.

Each finished run of an ablation cell (``<cell>/seed<k>/``: ``config.yaml`` and the best
``checkpoints/best-*.ckpt``) is loaded once and tested under every requested execution
(:class:`hqc.quantum.execution.Execution`, applied to every quantum layer of the model as the
``model.init_args.execution`` setting does): exact; ``shots=N`` (binomial shot noise on the exact
expectations); ``depolarizing=r`` (the torch density-matrix simulation with 2-qubit gate error
rate r and 1-qubit rate r/10, no readout error or relaxation, exact expectations); and a device
preset (``ionq_aria``, ``ibm_heron``: published gate, readout and relaxation rates) with
``--preset-shots`` shots. The head is trained exact; this measures what running it on such a
device would give. Every setting sees the same test sentences of the same draw, so each is
compared with exact by paired per-seed differences.

One CSV row per (run, setting), written atomically after each, so a killed sweep resumes
where it stopped; ``report`` turns the rows into a markdown table and a plot::

    python tools/execution_sweep.py run runs/ablate/bodies/head-projection__body-mpnet \\
        --out results/report/execution/projection_mpnet.csv --shots 64 256 1024 8192 \\
        --depolarizing 0.001 0.003 0.01 0.03 --presets ionq_aria ibm_heron --limit-test-batches 32
    python tools/execution_sweep.py report results/report/execution/projection_mpnet.csv \\
        --out results/report/execution/projection_mpnet
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from hqc.ablate.report import read_rows as report_rows
from hqc.ablate.report import write_rows
from hqc.ablate.stats import mean_ci, paired_differences
from hqc.errors import UserError, run_guarded
from hqc.noise.spec import NoiseSpec
from hqc.quantum.execution import Execution

EXACT = "exact"

Row = dict[str, str]


def settings(
    shots: Sequence[int], depolarizing: Sequence[float], presets: Sequence[str], preset_shots: int
) -> dict[str, tuple[int | None, NoiseSpec | str | None]]:
    """Setting name → (shots, noise), exact first."""
    table: dict[str, tuple[int | None, NoiseSpec | str | None]] = {EXACT: (None, None)}
    table |= {f"shots={n}": (n, None) for n in shots}
    for r in depolarizing:
        table[f"depolarizing={r:g}"] = (None, NoiseSpec(gate_error_1q=r / 10, gate_error_2q=r))
    table |= {f"{p}+{preset_shots}": (preset_shots, p) for p in presets}
    return table


def seed_runs(cell_dir: Path) -> list[tuple[int, Path, Path]]:
    """``(seed, config, best checkpoint)`` of every finished ``seed<k>`` run under ``cell_dir``."""
    found = []
    for run in sorted(cell_dir.glob("seed*")):
        match = re.fullmatch(r"seed(\d+)", run.name)
        best = sorted(run.glob("checkpoints/best-*.ckpt"))
        if match and best and (run / "config.yaml").is_file():
            found.append((int(match.group(1)), run / "config.yaml", best[-1]))
    if not found:
        raise UserError(f"{cell_dir}: no seed<k>/ run with config.yaml and checkpoints/best-*.ckpt")
    return found


def read_rows(path: Path) -> list[Row]:
    """The CSV's rows ([] before the first)."""
    return report_rows([path]) if path.exists() else []


def evaluate(model, datamodule, execution: Execution, limit: int | None) -> dict[str, float]:
    """``trainer.test`` of ``model`` under ``execution`` (the first ``limit`` test batches)."""
    from lightning.pytorch import Trainer

    model.set_execution(execution)
    trainer = Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_test_batches=limit if limit is not None else 1.0,
    )
    (metrics,) = trainer.test(model, datamodule=datamodule, verbose=False)
    batches = trainer.num_test_batches[0]
    sentences = min(len(datamodule.test_data.texts), batches * datamodule.batch_size)
    return {"acc": metrics["test/acc"], "f1": metrics["test/f1"], "sentences": sentences}


def sweep(
    cell_dir: Path,
    out: Path,
    table: dict[str, tuple[int | None, NoiseSpec | str | None]],
    limit: int | None = None,
) -> list[Row]:
    """Test every run of ``cell_dir`` under every setting not yet in ``out``; returns all rows."""
    from hqc.export.export import load_checkpoint

    rows = read_rows(out)
    done = {(r["cell"], r["seed"], r["setting"]) for r in rows}
    cell = cell_dir.name
    for seed, config, ckpt in seed_runs(cell_dir):
        todo = [name for name in table if (cell, str(seed), name) not in done]
        if not todo:
            continue
        model, cli = load_checkpoint(["--config", str(config)], ckpt)
        for name in todo:
            shots, noise = table[name]
            start = time.perf_counter()
            result = evaluate(model, cli.datamodule, Execution(shots, seed, noise), limit)
            rows.append(
                {
                    "cell": cell,
                    "seed": str(seed),
                    "setting": name,
                    "shots": "" if shots is None else str(shots),
                    "noise": _noise_label(noise),
                    "test_acc": f"{result['acc']:.6f}",
                    "test_f1": f"{result['f1']:.6f}",
                    "sentences": str(result["sentences"]),
                    "seconds": f"{time.perf_counter() - start:.1f}",
                }
            )
            write_rows(out, rows)
            print(f"{cell}/seed{seed} {name}: test_acc={result['acc']:.4f}", flush=True)
    return rows


def _noise_label(noise: NoiseSpec | str | None) -> str:
    if isinstance(noise, NoiseSpec):
        return f"depolarizing 2q {noise.gate_error_2q:g}, 1q {noise.gate_error_1q:g}"
    return noise or ""


def markdown(rows: Sequence[Row]) -> str:
    """Per cell and setting: seeds, accuracy and macro F1 (mean ± 95 % CI), paired Δ vs exact."""
    lines = [
        "| cell | setting | seeds | sentences / draw | test acc % | test macro F1 % "
        "| Δ vs exact (paired, points) | s / run |",
        "|---|---|---:|---:|---|---|---|---:|",
    ]
    for cell in dict.fromkeys(r["cell"] for r in rows):
        mine = [r for r in rows if r["cell"] == cell]
        exact = {r["seed"]: 100 * float(r["test_acc"]) for r in mine if r["setting"] == EXACT}
        for setting in dict.fromkeys(r["setting"] for r in mine):
            sel = [r for r in mine if r["setting"] == setting]
            acc = {r["seed"]: 100 * float(r["test_acc"]) for r in sel}
            f1 = [100 * float(r["test_f1"]) for r in sel]
            diffs = paired_differences(acc, exact)
            delta = "–" if setting == EXACT or not diffs else _fmt(diffs, sign=True)
            seconds = statistics.mean([float(r["seconds"]) for r in sel])
            lines.append(
                f"| {cell} | {setting} | {len(sel)} | {sel[0]['sentences']} | "
                f"{_fmt(list(acc.values()))} | {_fmt(f1)} | {delta} | {seconds:.1f} |"
            )
    return "\n".join(lines) + "\n"


def _fmt(values: Sequence[float], sign: bool = False) -> str:
    mean, ci = mean_ci(values)
    return f"{mean:+.2f} ± {ci:.2f}" if sign else f"{mean:.2f} ± {ci:.2f}"


def plot(rows: Sequence[Row], path: Path) -> Path | None:
    """Test accuracy (mean, 95 % band) against shots and against the depolarising rate.

    None (no file) when the rows hold neither, e.g. a presets-only sweep: its table says it all.
    """
    if not any(r["setting"].startswith(("shots=", "depolarizing=")) for r in rows):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for cell in dict.fromkeys(r["cell"] for r in rows):
        mine = [r for r in rows if r["cell"] == cell]
        exact = [100 * float(r["test_acc"]) for r in mine if r["setting"] == EXACT]
        for ax, prefix in zip(axes, ("shots=", "depolarizing="), strict=True):
            named = {r["setting"] for r in mine if r["setting"].startswith(prefix)}
            levels = sorted(float(name.removeprefix(prefix)) for name in named)
            if not levels:
                continue
            stats = [
                mean_ci(
                    [100 * float(r["test_acc"]) for r in mine if r["setting"] == f"{prefix}{lv:g}"]
                )
                for lv in levels
            ]
            means = [m for m, _ in stats]
            line = ax.plot(levels, means, marker="o", label=cell)[0]
            ax.fill_between(
                levels,
                [m - c for m, c in stats],
                [m + c for m, c in stats],
                alpha=0.2,
                color=line.get_color(),
            )
            if exact:
                ax.axhline(mean_ci(exact)[0], ls="--", color=line.get_color(), lw=1)
            ax.set_xscale("log")
    axes[0].set_xlabel("shots per expectation")
    axes[1].set_xlabel("2-qubit depolarising error rate (1-qubit: rate / 10)")
    axes[0].set_ylabel("test accuracy % (dashed: exact)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="test every run of cells under every execution")
    run.add_argument("cells", nargs="+", type=Path, help="cell folders holding seed<k>/ runs")
    run.add_argument("--out", type=Path, required=True, help="CSV of rows (resumed if present)")
    run.add_argument("--shots", type=int, nargs="*", default=[])
    run.add_argument("--depolarizing", type=float, nargs="*", default=[])
    run.add_argument("--presets", nargs="*", default=[], help="noise presets, e.g. ionq_aria")
    run.add_argument("--preset-shots", type=int, default=1024)
    run.add_argument(
        "--limit-test-batches",
        type=int,
        default=None,
        help="test only each draw's first N test batches (the same sentences for every setting)",
    )
    run.add_argument("--threads", type=int, default=1, help="torch threads (1: beside other jobs)")
    report = commands.add_parser("report", help="markdown table and plot from the rows")
    report.add_argument("csv", type=Path)
    report.add_argument("--out", type=Path, required=True, help="writes <out>.md and <out>.png")
    args = parser.parse_args(argv)
    if args.command == "run":
        import torch

        torch.set_num_threads(args.threads)
        table = settings(args.shots, args.depolarizing, args.presets, args.preset_shots)
        for cell in args.cells:
            sweep(cell, args.out, table, args.limit_test_batches)
        return
    rows = read_rows(args.csv)
    if not rows:
        raise UserError(f"{args.csv}: no rows")
    text = markdown(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    figure = plot(rows, args.out.with_suffix(".png"))
    print(text, end="")
    if figure is None:
        print(f"(no shots or depolarising levels in {args.csv}: no plot)")


if __name__ == "__main__":
    run_guarded(_main)
