"""Paired comparison of heads from different result files on the same draws of the protocol.

The ablation runner's CSVs (``python -m hqc.ablate report``) and ``tools/baselines.py``'s
CSVs share ``seed`` and ``test_acc`` columns; a seed is a draw (split and initialisation), so a
fine-tuned body, a frozen body's logistic regression and a SetFit-tuned body's are compared by
their per-seed differences. Each source is ``LABEL=PATH`` with optional ``@COLUMN=VALUE``
filters; the first is the reference:

    python tools/paired.py \\
        "frozen LR=results/report/classical_heads.csv@head=logistic regression" \\
        "fine-tuned=results/report/finetune/finetune.csv"

A filter that leaves two rows of one seed (e.g. two encoders in one file) is an error naming
the seed, not a silent pick.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path

from hqc.ablate.stats import mean_ci, paired_differences


def load(spec: str) -> tuple[str, dict[int, float]]:
    """``LABEL=PATH[@COLUMN=VALUE...]`` → the label and test accuracy (%) by seed."""
    label, _, rest = spec.partition("=")
    path, *filters = rest.split("@")
    if not label or not path or not all("=" in f for f in filters):
        raise SystemExit(f"error: {spec!r} is not LABEL=PATH[@COLUMN=VALUE...]")
    wanted = dict(f.split("=", 1) for f in filters)
    source = Path(path)
    if not source.is_file():
        raise SystemExit(f"error: {spec!r}: no file {path}")
    with source.open(newline="") as f:
        rows = list(csv.DictReader(f))
    picked: dict[int, float] = {}
    for r in rows:
        if all(r.get(k) == v for k, v in wanted.items()) and r.get("status", "ok") == "ok":
            if int(r["seed"]) in picked:
                raise SystemExit(
                    f"error: {path}: more than one row matching {wanted} has seed {r['seed']}; "
                    "add a filter (@COLUMN=VALUE)"
                )
            picked[int(r["seed"])] = float(r["test_acc"]) * 100
    if not picked:
        raise SystemExit(f"error: no finished rows in {path} match {wanted}")
    return label, picked


def table(sources: Sequence[tuple[str, dict[int, float]]]) -> str:
    """Markdown: each source's draws, mean ± 95 % CI, and its paired Δ to the first."""
    reference_label, reference = sources[0]
    lines = [
        f"| source | draws | test acc % | Δ vs {reference_label} (paired, points) | draws above |",
        "|---|---:|---|---|---|",
    ]
    for i, (label, values) in enumerate(sources):
        acc = "{:.2f} ± {:.2f}".format(*mean_ci(list(values.values())))
        diffs = paired_differences(values, reference)
        if i == 0:
            delta, above = "(reference)", "–"
        elif not diffs:
            delta, above = "– (no shared draws)", "–"
        else:
            delta = "{:+.2f} ± {:.2f} (n={})".format(*mean_ci(diffs), len(diffs))
            above = f"{sum(d > 0 for d in diffs)} / {len(diffs)}"
        lines.append(f"| {label} | {len(values)} | {acc} | {delta} | {above} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the table of the sources given on the command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "sources", nargs="+", help="LABEL=PATH[@COLUMN=VALUE...]; the first is the reference"
    )
    print(table([load(s) for s in p.parse_args(argv).sources]))


if __name__ == "__main__":
    main()
