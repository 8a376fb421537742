"""Per-epoch train/validation curves of an ablation matrix's runs: does a head underfit or overfit?

A head that underfits ends with low *training* accuracy (it cannot fit the 435 sentences it
sees); one that overfits fits them and falls behind on validation and test. The runs'
``metrics.csv`` (Lightning's CSV logger) hold ``train/acc`` (the epoch's running accuracy over
its training batches, in train mode) and ``val/acc`` (77 sentences) per epoch; ``result.json``
holds the best-``val/acc`` checkpoint's test accuracy. This script

1. collects those curves into one tidy CSV (one row per cell × seed × epoch), so the table and
   plot regenerate from a committed file without the run directories;
2. prints a markdown table per cell (mean ± 95 % t-interval over seeds): training accuracy at
   the last epoch and at the best-validation epoch, the best training accuracy reached, the best
   validation accuracy, test accuracy, and the train − test gap at the tested epoch;
3. plots mean train and validation accuracy per epoch per cell, with 95 % bands.

    python tools/head_curves.py collect runs/ablate/mpnet_heads \\
        --out results/report/mpnet_heads/curves.csv
    python tools/head_curves.py report results/report/mpnet_heads/curves.csv \\
        --plot results/report/mpnet_heads/curves.png --md results/report/mpnet_heads/curves.md \\
        --cells head-classical head-hybrid head-projection
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hqc.ablate.stats import mean_ci

FIELDS = ["cell", "seed", "epoch", "train_acc", "train_loss", "val_acc", "val_loss", "test_acc"]
CURVE_KEYS = {"train/acc": "train_acc", "train/loss": "train_loss"}
CURVE_KEYS |= {"val/acc": "val_acc", "val/loss": "val_loss"}

Row = dict[str, str]


def run_curves(run_dir: Path) -> dict[int, dict[str, float]]:
    """``epoch → {train_acc, …}`` of one run; a resumed run's later CSV version wins per epoch.

    Per-step rows (``train/loss`` logged on step) carry no epoch-level ``train/acc`` and are
    skipped: only the values Lightning logged at an epoch's end are kept.
    """
    epochs: dict[int, dict[str, float]] = {}
    versions = sorted(
        (run_dir / "csv").glob("version_*/metrics.csv"),
        key=lambda p: int(p.parent.name.split("_")[1]),
    )
    for path in versions:
        seen: dict[int, dict[str, float]] = {}
        with path.open() as f:
            for line in csv.DictReader(f):
                if not line.get("epoch"):
                    continue
                epoch = int(line["epoch"])
                values = {
                    name: float(line[key])
                    for key, name in CURVE_KEYS.items()
                    if line.get(key) not in (None, "")
                }
                if "train_acc" not in values and "val_acc" not in values:
                    continue  # a per-step training row
                if "train_acc" not in values:
                    values.pop("train_loss", None)  # step loss on a validation row
                seen.setdefault(epoch, {}).update(values)
        epochs.update(seen)
    return epochs


def collect(root: Path) -> list[Row]:
    """Every finished ``ok`` run below ``root`` (``<cell>/seed<seed>/``) as per-epoch rows."""
    rows: list[Row] = []
    for result_path in sorted(root.glob("*/seed*/result.json")):
        result = json.loads(result_path.read_text())
        if result.get("status") != "ok":
            continue
        curves = run_curves(result_path.parent)
        for epoch in sorted(curves):
            values = curves[epoch]
            rows.append(
                {
                    "cell": result["cell"],
                    "seed": str(result["seed"]),
                    "epoch": str(epoch),
                    **{k: _text(values.get(k)) for k in FIELDS[3:7]},
                    "test_acc": _text(result.get("test_acc")),
                }
            )
    return rows


def _text(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def read_rows(path: Path) -> list[Row]:
    """The curves CSV written by :func:`collect`."""
    with path.open() as f:
        return list(csv.DictReader(f))


def _runs(rows: Sequence[Row]) -> dict[str, dict[int, list[Row]]]:
    """``cell → seed → its rows in epoch order`` (cells in first-seen order)."""
    runs: dict[str, dict[int, list[Row]]] = {}
    for r in rows:
        runs.setdefault(r["cell"], {}).setdefault(int(r["seed"]), []).append(r)
    for seeds in runs.values():
        for seed_rows in seeds.values():
            seed_rows.sort(key=lambda r: int(r["epoch"]))
    return runs


def _value(row: Row, key: str) -> float:
    return float(row[key]) * 100 if row[key] != "" else math.nan


def summary(rows: Sequence[Row]) -> list[dict[str, object]]:
    """Per cell: seeds and the per-seed numbers the table averages (percentage points)."""
    out = []
    for cell, seeds in _runs(rows).items():
        stats: dict[str, list[float]] = {
            k: [] for k in ("last_train", "best_train", "train_at_best", "best_val", "test", "gap")
        }
        for seed_rows in seeds.values():
            trained = [r for r in seed_rows if r["train_acc"] != ""]
            validated = [r for r in seed_rows if r["val_acc"] != ""]
            if not trained or not validated:
                continue
            # the checkpoint callback keeps the first epoch reaching the best val/acc
            best = max(validated, key=lambda r: (_value(r, "val_acc"), -int(r["epoch"])))
            at_best = [r for r in trained if r["epoch"] == best["epoch"]]
            train_at_best = _value(at_best[0], "train_acc") if at_best else math.nan
            test = _value(seed_rows[0], "test_acc")
            stats["last_train"].append(_value(trained[-1], "train_acc"))
            stats["best_train"].append(max(_value(r, "train_acc") for r in trained))
            stats["train_at_best"].append(train_at_best)
            stats["best_val"].append(_value(best, "val_acc"))
            stats["test"].append(test)
            stats["gap"].append(train_at_best - test)
        epochs = max(int(r["epoch"]) for s in seeds.values() for r in s) + 1
        out.append({"cell": cell, "seeds": len(stats["test"]), "epochs": epochs, **stats})
    return out


def _fmt(values: Sequence[float], sign: bool = False) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "–"
    mean, half = mean_ci(values)
    return f"{mean:{'+' if sign else ''}.1f} ± {half:.1f}"


def markdown(rows: Sequence[Row]) -> str:
    """The underfit/overfit table: one line per cell, mean ± 95 % CI over its seeds."""
    head = ["cell", "seeds", "epochs", "train acc, last epoch %", "best train acc %"]
    head += ["train acc at tested epoch %", "best val acc %", "test acc %"]
    head += ["train − test at tested epoch (points)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary(rows):
        cols = [str(s["cell"]), str(s["seeds"]), str(s["epochs"])]
        cols += [_fmt(s[k]) for k in ("last_train", "best_train", "train_at_best", "best_val")]
        cols += [_fmt(s["test"]), _fmt(s["gap"], sign=True)]
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Row], path: Path, title: str) -> Path:
    """Mean train (solid) and validation (dashed) accuracy per epoch per cell, 95 % bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (cell, seeds), color in zip(_runs(rows).items(), colors, strict=False):
        for key, style, label in (("train_acc", "-", "train"), ("val_acc", "--", "val")):
            by_epoch: dict[int, list[float]] = {}
            for seed_rows in seeds.values():
                for r in seed_rows:
                    if r[key] != "":
                        by_epoch.setdefault(int(r["epoch"]), []).append(_value(r, key))
            xs = sorted(by_epoch)
            stats = [mean_ci(by_epoch[e]) for e in xs]
            mean = np.array([m for m, _ in stats])
            half = np.array([h for _, h in stats])
            ax.plot(xs, mean, style, color=color, label=f"{cell} {label} (n={len(seeds)})")
            ax.fill_between(xs, mean - half, mean + half, color=color, alpha=0.15)
        tests = [_value(s[0], "test_acc") for s in seeds.values()]
        ax.axhline(float(np.mean(tests)), color=color, linestyle=":", linewidth=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy % (mean ± 95 % CI over seeds)")
    ax.set_title(f"{title}\nsolid: train (running, train mode); dashed: val; dotted: mean test")
    ax.legend(fontsize=7, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_rows(path: Path, rows: Sequence[Row]) -> None:
    """Write the curves CSV (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def main(argv: Sequence[str] | None = None) -> None:
    """``collect`` run folders into a curves CSV, or ``report`` a CSV as a table and a plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect", help="run folders -> curves CSV")
    c.add_argument("root", type=Path, help="a matrix's run folder (runs/ablate/<name>)")
    c.add_argument("--out", type=Path, required=True, help="the curves CSV to write")
    r = sub.add_parser("report", help="curves CSV -> markdown table (stdout) and plot")
    r.add_argument("csv", type=Path)
    r.add_argument("--plot", type=Path, help="PNG to write")
    r.add_argument("--md", type=Path, help="also write the table here")
    r.add_argument("--title", default="train/validation accuracy per epoch")
    r.add_argument("--cells", nargs="+", help="plot only these cells (the table keeps all)")
    args = parser.parse_args(argv)
    if args.command == "collect":
        rows = collect(args.root)
        if not rows:
            parser.error(f"no finished runs with metrics under {args.root}")
        write_rows(args.out, rows)
        print(f"wrote {len(rows)} rows to {args.out}")
        return
    rows = read_rows(args.csv)
    text = markdown(rows)
    print(text)
    if args.md:
        args.md.write_text(text)
    if args.plot:
        shown = [r for r in rows if args.cells is None or r["cell"] in args.cells]
        if not shown:
            parser.error(f"--cells: none of {args.cells} is in {args.csv}")
        print(f"wrote {plot(shown, args.plot, args.title)}")


if __name__ == "__main__":
    main()
