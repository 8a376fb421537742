"""Ablation matrix: a base config × component substitutions (``ablations/*.yaml``) × seeds.

Each cell is one in-process ``hqc`` fit whose seed drives both the weights and the paper
split's draw. Every finished cell is appended to a CSV that is rewritten atomically, so a killed
study resumes where it stopped (finished cells are skipped). The summary gives mean, standard
deviation and a 95 % t-interval of test accuracy per ablation.

    python tools/ablate.py --base configs/hybrid.yaml --ablations ablations/*.yaml \\
        --seeds 0 1 2 --out runs/ablations/results.csv
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from pathlib import Path

from scipy import stats

from hqc.main import main as hqc_main

FIELDS = ["ablation", "seed", "test_acc", "test_f1", "best_val_acc", "parameters", "seconds"]
BASELINE = "baseline"


def read_rows(path: Path) -> list[dict[str, str]]:
    """Finished cells, or none for a new study."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict[str, object]]) -> None:
    """Replace the CSV atomically: a kill mid-write never loses finished cells."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def run_cell(base: str, ablation: Path | None, seed: int, root: Path, extra: list[str]) -> dict:
    """Fit one (ablation, seed) cell and return its CSV row."""
    name = ablation.stem if ablation else BASELINE
    args = ["fit", "--config", base]
    if ablation:
        args += ["--config", str(ablation)]
    args += [
        "--seed_everything", str(seed),
        "--data.init_args.seed", str(seed),
        "--trainer.default_root_dir", str(root / name / f"seed{seed}"),
        "--trainer.enable_progress_bar", "false",
        *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    cli = hqc_main(args)
    metrics = cli.trainer.callback_metrics
    best = cli.trainer.checkpoint_callback.best_model_score
    return {
        "ablation": name,
        "seed": seed,
        "test_acc": f"{float(metrics['test/acc']):.6f}",
        "test_f1": f"{float(metrics['test/f1']):.6f}",
        "best_val_acc": f"{float(best):.6f}" if best is not None else "",
        "parameters": sum(p.numel() for p in cli.model.parameters() if p.requires_grad),
        "seconds": f"{time.perf_counter() - start:.1f}",
    }


def summary(rows: list[dict[str, str]]) -> str:
    """Markdown table: test accuracy mean ± std and 95 % CI per ablation."""
    lines = [
        "| ablation | params | seeds | test acc (mean ± std) | 95 % CI |",
        "|---|---:|---:|---|---|",
    ]
    for name in dict.fromkeys(r["ablation"] for r in rows):
        accs = [float(r["test_acc"]) * 100 for r in rows if r["ablation"] == name]
        params = next(r["parameters"] for r in rows if r["ablation"] == name)
        mean = statistics.mean(accs)
        if len(accs) > 1:
            std = statistics.stdev(accs)
            half = stats.t.ppf(0.975, len(accs) - 1) * std / len(accs) ** 0.5
            ci = f"[{mean - half:.2f}, {mean + half:.2f}]"
        else:
            std, ci = 0.0, "–"
        lines.append(f"| {name} | {params} | {len(accs)} | {mean:.2f} ± {std:.2f} | {ci} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run every missing cell of the matrix, then print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="configs/hybrid.yaml")
    parser.add_argument("--ablations", nargs="*", default=[], type=Path)
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmodified base")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/ablations/results.csv"))
    parser.add_argument("extra", nargs="*", help="more hqc arguments after --, for every cell")
    args = parser.parse_args(argv)

    for path in args.ablations:
        if not path.is_file():
            parser.error(f"ablation file not found: {path}")
    cells = ([] if args.no_baseline else [None]) + list(args.ablations)
    rows = read_rows(args.out)
    done = {(r["ablation"], int(r["seed"])) for r in rows}
    for ablation in cells:
        for seed in args.seeds:
            name = ablation.stem if ablation else BASELINE
            if (name, seed) in done:
                continue
            rows.append(run_cell(args.base, ablation, seed, args.out.parent, args.extra))
            write_rows(args.out, rows)
    print(summary(rows))


if __name__ == "__main__":
    main()
