"""``python -m hqc.ablate report``: a matrix's runs → one tidy CSV, markdown tables and plots.

The CSV has one row per run (cell × seed) and carries everything the tables need, so a
committed CSV regenerates the report without the run directories::

    matrix, design, cell, paired_with, <factor>..., code_<factor>..., seed, status,
    parameters, train_seconds, epochs, val_acc, test_acc, test_f1, error

``<factor>`` columns hold the level names; ``code_<factor>`` the ±1 coding of two-level
factors (first level −1); ``paired_with`` the cell each run is compared with on the same seed
(the matrix's ``reference`` levels put over the run's own, empty where that cell is not in the
design). Tables: per cell mean ± 95 % t-interval over seeds of test and validation accuracy,
macro F1, trainable parameters and training seconds, and the paired test-accuracy difference;
for two-level screens the main effects (OLS on the ±1 coding) with standard errors. Plots
(matplotlib, the ``plots`` extra): accuracy against a numeric factor with CI bands per level
of the others, a strip plot per cell, and the main-effects plot.

    python -m hqc.ablate report ablations/qubits.yaml --out results/ablate
    python -m hqc.ablate report results/ablate/qubits.csv          # from the committed rows
    python -m hqc.ablate report results/ablate/qubits.csv more.csv --out results/ablate

Runs from several machines accumulate: a matrix's report merges its run folder's rows into the
CSV already in ``--out`` (a re-run replaces its row; ``--replace`` writes the folder's alone), and
several CSVs merge the same way, a later file's run replacing an earlier one's.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from hqc.ablate.matrix import TWO_LEVEL_DESIGNS, Matrix, load_matrix
from hqc.ablate.record import read_result
from hqc.ablate.stats import main_effects, mean_ci, paired_differences
from hqc.errors import UserError

if TYPE_CHECKING:
    from hqc.ablate.design import Cell

FIXED = ["matrix", "design", "cell", "paired_with", "matched_with"]
METRICS = ["seed", "status", "parameters", "train_seconds", "epochs"]
METRICS += ["val_acc", "test_acc", "test_f1", "error"]
OK = "ok"

Row = dict[str, str]


def factors_of(rows: Sequence[Row]) -> list[str]:
    """The factor columns of a results table, in column order."""
    if not rows:
        return []
    skip = set(FIXED) | set(METRICS)
    return [k for k in rows[0] if k not in skip and not k.startswith("code_")]


def collect(matrix: Matrix, out: Path | None = None) -> list[Row]:
    """Every finished run's ``result.json`` (runs under ``out`` or the matrix's root) as CSV
    rows, in run order; unfinished runs are left out."""
    from hqc.ablate.design import Cell, cells, codes
    from hqc.ablate.plan import runs

    names = {c.name for c in cells(matrix)}
    given = _given_reference(matrix)
    rows = []
    for run in runs(matrix, out):
        result = read_result(run.directory)
        if result is None:
            continue
        paired = Cell({**run.cell.levels, **given}).name
        matched = _matched_cell(matrix, run.cell)
        row = {
            "matrix": matrix.name,
            "design": matrix.design.type,
            "cell": run.cell.name,
            "paired_with": paired if paired in names else "",
            "matched_with": matched if matched in names else "",
            **run.cell.levels,
        }
        row |= {f"code_{f}": str(v) for f, v in codes(matrix, run.cell).items()}
        row |= {k: _text(result.get(k)) for k in METRICS}
        rows.append(row)
    return rows


def _matched_cell(matrix: Matrix, cell: Cell) -> str:
    """The cell whose ``match_parameters`` level names one of ``cell``'s levels ("" if none):
    the classical head sized to this cell, compared with it on the same seeds."""
    from hqc.ablate.design import Cell

    for factor, level in cell.levels.items():
        for name, other in matrix.factors[factor].items():
            if other.match is not None and other.match.level == level:
                return Cell({**cell.levels, factor: name}).name
    return ""


def _given_reference(matrix: Matrix) -> dict[str, str]:
    """The reference levels the file names (every factor's where it names none): a cell is
    paired with the cell that has those levels and its own for the other factors."""
    raw = yaml.safe_load(matrix.path.read_text()).get("reference")
    return {f: matrix.reference[f] for f in raw} if raw else dict(matrix.reference)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def read_rows(paths: Sequence[Path]) -> list[Row]:
    """Rows of one or more results CSVs, merged in order (:func:`merge_rows`)."""
    rows: list[Row] = []
    for path in paths:
        if not path.is_file():
            raise UserError(f"results CSV not found: {path}")
        with path.open(newline="") as f:
            rows = merge_rows(rows, list(csv.DictReader(f)))
    return rows


def merge_rows(earlier: Sequence[Row], later: Sequence[Row]) -> list[Row]:
    """``earlier`` with each run (matrix, cell, seed) that ``later`` has replaced in place, then
    ``later``'s other rows: a re-run is counted once, and runs measured elsewhere are kept.

    Rows without a ``matrix`` column (the execution sweep's, several per run) are never merged.
    """
    new = {key: r for r in later if (key := _run_key(r))}
    unkeyed = [r for r in later if _run_key(r) is None]
    return [new.pop(_run_key(r), r) for r in earlier] + list(new.values()) + unkeyed


def _run_key(row: Row) -> tuple[str, str, str] | None:
    if "matrix" not in row:
        return None
    return row["matrix"], row["cell"], row["seed"]


def write_rows(path: Path, rows: Sequence[Row]) -> None:
    """Write the tidy CSV atomically (a reader never sees half).

    Columns are every row's, in order of first appearance: CSVs from different hqc versions
    merge (a column one lacks is left empty).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    columns = list(dict.fromkeys(key for row in rows for key in row)) or FIXED + METRICS
    try:
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _ok(rows: Sequence[Row]) -> list[Row]:
    return [r for r in rows if r["status"] == OK and r["test_acc"] != ""]


def _by_cell(rows: Sequence[Row]) -> dict[str, list[Row]]:
    cells: dict[str, list[Row]] = {}
    for r in rows:
        cells.setdefault(r["cell"], []).append(r)
    return cells


def _points(rows: Sequence[Row], key: str) -> dict[str, float]:
    """``seed → value`` in percentage points (fractions × 100) for one cell."""
    return {r["seed"]: float(r[key]) * 100 for r in rows if r[key] != ""}


def _fmt(values: Sequence[float], digits: int = 2, sign: bool = False) -> str:
    if not values:
        return "–"
    mean, half = mean_ci(values)
    return f"{mean:{'+' if sign else ''}.{digits}f} ± {half:.{digits}f}"


def _delta(rows: Sequence[Row], other: Sequence[Row]) -> str:
    """Paired test-accuracy difference of ``rows`` to ``other`` on their shared seeds."""
    diffs = paired_differences(_points(rows, "test_acc"), _points(other, "test_acc"))
    return f"{_fmt(diffs, sign=True)} (n={len(diffs)})" if diffs else "–"


def cell_table(rows: Sequence[Row]) -> str:
    """Markdown: one line per cell, means ± 95 % CI over its finished seeds."""
    factors = factors_of(rows)
    cells = _by_cell(rows)
    done = _by_cell(_ok(rows))
    head = [*factors, "runs (failed)", "trainable params", "test acc %", "test macro F1 %"]
    head += ["val acc %", "train s", "Δ test vs paired cell (points)", "paired cell"]
    matching = any(r.get("matched_with") for r in rows)
    if matching:
        head.append("Δ test vs its parameter-matched cell (points)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, all_runs in cells.items():
        ok = done.get(name, [])
        failed = len(all_runs) - len(ok)
        params = sorted({int(float(r["parameters"])) for r in ok if r["parameters"] != ""})
        param_text = "–" if not params else f"{params[0]:,}"
        if len(params) > 1:
            param_text = f"{params[0]:,}–{params[-1]:,}"
        paired = all_runs[0]["paired_with"]
        delta = _delta(ok, done.get(paired, [])) if paired and paired != name else "–"
        seconds = [float(r["train_seconds"]) for r in ok if r["train_seconds"] != ""]
        cols = [all_runs[0][f] for f in factors]
        cols += [f"{len(ok)} ({failed})" if failed else str(len(ok)), param_text]
        cols += [_fmt(list(_points(ok, k).values())) for k in ("test_acc", "test_f1", "val_acc")]
        cols += [_fmt(seconds, 1), delta, "(reference)" if paired == name else paired or "–"]
        if matching:
            matched = all_runs[0].get("matched_with")
            cols.append(f"{_delta(ok, done.get(matched, []))} vs {matched}" if matched else "–")
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


def effects(rows: Sequence[Row]) -> tuple[list[str], list]:
    """Main effects on test accuracy (points) of the two-level factors, over finished runs."""
    ok = _ok(rows)
    factors = [f for f in factors_of(rows) if ok and ok[0].get(f"code_{f}", "") != ""]
    x = np.array([[float(r[f"code_{f}"]) for f in factors] for r in ok])
    y = np.array([float(r["test_acc"]) * 100 for r in ok])
    return factors, main_effects(x, y, factors)


def effects_table(rows: Sequence[Row]) -> str:
    """Markdown: each factor's main effect (+1 level minus −1 level) with SE and 95 % CI."""
    factors, found = effects(rows)
    levels = {f: _two_levels(rows, f) for f in factors}
    lines = [
        "| factor | −1 level | +1 level | main effect on test acc (points) | SE | 95 % CI |",
        "|---|---|---|---:|---:|---|",
    ]
    for e in found:
        low, high = levels[e.factor]
        lines.append(
            f"| {e.factor} | {low} | {high} | {e.effect:+.2f} | {e.se:.2f} "
            f"| [{e.effect - e.ci:+.2f}, {e.effect + e.ci:+.2f}] |"
        )
    return "\n".join(lines)


def _two_levels(rows: Sequence[Row], factor: str) -> tuple[str, str]:
    by_code = {r[f"code_{factor}"]: r[factor] for r in rows}
    return by_code.get("-1", "?"), by_code.get("1", "?")


def markdown(rows: Sequence[Row]) -> str:
    """The whole report: the cell table, and the main effects for a two-level screen."""
    name = rows[0]["matrix"]
    design = rows[0]["design"]
    seeds = sorted({int(r["seed"]) for r in rows})
    out = [
        f"### {name} ({design} design, {len(_by_cell(rows))} cells, seeds {seeds})",
        "",
        "Means ± 95 % t-intervals over finished seeds; Δ is the paired difference (same seeds) "
        "to the paired cell.",
        "",
        cell_table(rows),
    ]
    if design in TWO_LEVEL_DESIGNS and len(_ok(rows)) > len(effects(rows)[0]) + 1:
        out += ["", "Main effects (OLS on ±1 coding, every finished run one observation):", ""]
        out.append(effects_table(rows))
    return "\n".join(out) + "\n"


def numeric_factor(rows: Sequence[Row]) -> str | None:
    """The one factor whose levels are all numbers (the x axis of the accuracy plot)."""
    numeric = [f for f in factors_of(rows) if all(_is_number(r[f]) for r in rows)]
    return numeric[0] if len(numeric) == 1 else None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def plot(rows: Sequence[Row], out: Path, x: str | None = None) -> list[Path]:
    """Write the PNGs this table supports; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = rows[0]["matrix"]
    written = [_strip_plot(plt, rows, out / f"{name}_cells.png")]
    x = x or numeric_factor(rows)
    if x is not None:
        written.append(_accuracy_plot(plt, rows, x, out / f"{name}_accuracy_vs_{x}.png"))
    if rows[0]["design"] in TWO_LEVEL_DESIGNS and len(_ok(rows)) > len(effects(rows)[0]) + 1:
        written.append(_effects_plot(plt, rows, out / f"{name}_main_effects.png"))
    return written


def _save(plt: object, fig: object, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _strip_plot(plt: object, rows: Sequence[Row], path: Path) -> Path:
    """Every seed's test accuracy per cell, with the mean and its 95 % CI."""
    cells = _by_cell(_ok(rows))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(cells) + 1.2))
    for i, runs in enumerate(cells.values()):
        values = list(_points(runs, "test_acc").values())
        jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [0.0]
        ax.scatter(values, i + np.asarray(jitter), s=14, color="tab:blue", alpha=0.7)
        mean, half = mean_ci(values)
        ax.errorbar(mean, i, xerr=half, fmt="o", color="black", capsize=3)
    ax.set_yticks(range(len(cells)), list(cells), fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy % (dots: seeds; black: mean ± 95 % CI)")
    ax.set_title(rows[0]["matrix"])
    return _save(plt, fig, path)


def _accuracy_plot(plt: object, rows: Sequence[Row], x: str, path: Path) -> Path:
    """Mean test accuracy against ``x`` with 95 % CI bands, one line per level of the rest."""
    others = [f for f in factors_of(rows) if f != x]
    groups: dict[str, dict[float, list[float]]] = {}
    for r in _ok(rows):
        label = ", ".join(r[f] for f in others) or "all"
        groups.setdefault(label, {}).setdefault(float(r[x]), []).append(float(r["test_acc"]) * 100)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, by_x in groups.items():
        xs = sorted(by_x)
        stats = [mean_ci(by_x[v]) for v in xs]
        mean = np.array([m for m, _ in stats])
        half = np.array([h for _, h in stats])
        ax.plot(xs, mean, marker="o", label=label)
        ax.fill_between(xs, mean - half, mean + half, alpha=0.2)
    ax.set_xlabel(x)
    ax.set_ylabel("test accuracy % (mean ± 95 % CI)")
    ax.set_title(rows[0]["matrix"])
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def _effects_plot(plt: object, rows: Sequence[Row], path: Path) -> Path:
    """Mean test accuracy at each factor's two levels (the classic main-effects plot)."""
    factors, found = effects(rows)
    ok = _ok(rows)
    fig, axes = plt.subplots(1, len(factors), figsize=(1.6 * len(factors) + 1, 3), sharey=True)
    for ax, effect in zip(np.atleast_1d(axes), found, strict=True):
        f = effect.factor
        means = [
            statistics.mean(float(r["test_acc"]) * 100 for r in ok if r[f"code_{f}"] == code)
            for code in ("-1", "1")
        ]
        ax.plot([0, 1], means, marker="o")
        ax.set_xticks([0, 1], list(_two_levels(rows, f)), fontsize=7)
        ax.set_title(f"{f}\n{effect.effect:+.2f} ± {effect.se:.2f}", fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("mean test accuracy %")
    return _save(plt, fig, path)


def report_main(argv: Sequence[str] | None = None) -> None:
    """Collect, write ``<name>.csv`` / ``<name>.md`` / PNGs into ``--out``, print the tables."""
    parser = argparse.ArgumentParser(
        prog="python -m hqc.ablate report", description=__doc__.splitlines()[0]
    )
    parser.add_argument("sources", type=Path, nargs="+", help="a matrix YAML, or results CSVs")
    parser.add_argument("--out", type=Path, help="folder for the CSV, markdown and PNGs")
    parser.add_argument("--runs", type=Path, help="the matrix's run folder (its run --out)")
    parser.add_argument("--x", help="factor on the accuracy plot's x axis (default: numeric one)")
    parser.add_argument("--no-plots", action="store_true", help="tables only")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="with a matrix: write only its run folder's rows (default: merge into --out's CSV)",
    )
    args = parser.parse_args(argv)
    if args.sources[0].suffix in (".yaml", ".yml"):
        if len(args.sources) > 1:
            parser.error("give one matrix file, or results CSVs")
        matrix = load_matrix(args.sources[0])
        rows = collect(matrix, args.runs)
        out = args.out or args.runs or matrix.root
        x = args.x or matrix.plot.get("x")
        if not rows:
            raise UserError(f"{matrix.path}: no finished runs under {args.runs or matrix.root}")
        rows = _merge_committed(out / f"{matrix.name}.csv", rows, args.replace)
    else:
        if args.runs or any(p.is_dir() for p in args.sources):
            parser.error("a run folder goes with its matrix: report MATRIX.yaml --runs FOLDER")
        rows = read_rows(args.sources)
        x = args.x
        out = args.out or args.sources[0].parent
        if not rows:
            raise UserError(f"{args.sources[0]}: no rows")
    name = rows[0]["matrix"]
    csv_path = out / f"{name}.csv"
    if [p.resolve() for p in args.sources] != [csv_path.resolve()]:  # not just itself again
        write_rows(csv_path, rows)
    text = markdown(rows)
    (out / f"{name}.md").write_text(text)
    print(text)
    if not args.no_plots:
        for path in plot(rows, out, x):
            print(f"wrote {path}")


def _merge_committed(path: Path, rows: list[Row], replace: bool) -> list[Row]:
    """A run folder's rows merged into the results CSV already at ``path``, so a report from one
    machine never drops the runs another measured; says how many it kept."""
    if replace or not path.is_file():
        return rows
    earlier = read_rows([path])
    merged = merge_rows(earlier, rows)
    kept = len(merged) - len(rows)
    if kept:
        print(
            f"{path}: kept {kept} rows the run folder lacks (--replace drops them)", file=sys.stderr
        )
    return merged
