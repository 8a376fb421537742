"""Per-epoch tables of exact vs noisy validation from finished ``hqc fit`` runs.

One command per run folder (``--trainer.default_root_dir``), after a fit with a noise preset::

    python tools/bench_noise_runs.py runs/noise/ionq_aria --name hybrid_ionq_aria \
        --command "python -m hqc fit --config configs/hybrid.yaml --config ..."

Reads ``csv/version_*/metrics.csv`` (the newest version) and, when the run also logged to
W&B offline, the history records of ``wandb/offline-run-*/run-*.wandb``, and writes
``results/noise/<name>.csv`` (one row per epoch: ``val/*``, ``val_noisy/*``, and the W&B values
of the same two accuracies, so both loggers are shown to agree) and ``results/noise/<name>.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["val/acc", "val/loss", "val_noisy/acc", "val_noisy/f1", "val_noisy/loss"]
SECONDS = "val_noisy/seconds"
TESTS = ["test/acc", "test_noisy/acc"]


def csv_rows(run: Path) -> list[dict[str, str]]:
    """Rows of the newest CSVLogger ``metrics.csv`` under ``run``."""
    versions = sorted(run.glob("csv/version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not versions:
        raise SystemExit(f"{run}: no csv/version_*/metrics.csv (was the CSVLogger on?)")
    with versions[-1].open() as f:
        return list(csv.DictReader(f))


def wandb_history(run: Path) -> list[dict[str, object]]:
    """History rows of the newest offline W&B run under ``run`` ([] without one).

    The ``.wandb`` file is a LevelDB-style log: a 7-byte file header, then 32 KiB blocks of
    records ``crc32 (4) | length (2) | type (1: full, 2: first, 3: middle, 4: last) | data``,
    each record a ``wandb_internal_pb2.Record``.
    """
    files = sorted(run.glob("wandb/offline-run-*/run-*.wandb"), key=lambda p: p.stat().st_mtime)
    if not files:
        return []
    from wandb.proto import wandb_internal_pb2

    raw, block, header = files[-1].read_bytes(), 32768, 7
    pos, pending, rows = 7, b"", []
    while pos + header <= len(raw):
        if block - pos % block < header:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + header])
        data = raw[pos + header : pos + header + length]
        pos += header + length
        if kind == 0:
            continue
        pending = data if kind in (1, 2) else pending + data
        if kind not in (1, 4):
            continue
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        if record.WhichOneof("record_type") == "history":
            items = record.history.item
            rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items})
    return rows


def table(run: Path) -> tuple[list[dict[str, str]], dict[str, str]]:
    """One row per epoch with ``val/*`` and ``val_noisy/*`` (W&B's accuracies beside them),
    and the run's test metrics."""
    rows = csv_rows(run)
    epochs: dict[str, dict[str, str]] = {}
    tests: dict[str, str] = {}
    for row in rows:
        for key in TESTS:
            if row.get(key):
                tests[key] = row[key]
        if row.get("val/acc"):
            out = epochs.setdefault(row["epoch"], {"epoch": row["epoch"]})
            out.update({k: row.get(k, "") for k in [*COLUMNS, SECONDS] if row.get(k)})
    for row in wandb_history(run):
        epoch = str(row.get("epoch"))
        if epoch in epochs:
            for key in ("val/acc", "val_noisy/acc"):
                if key in row:
                    epochs[epoch][f"wandb {key}"] = f"{row[key]:.6g}"
    return list(epochs.values()), tests


def markdown(rows: list[dict[str, str]], tests: dict[str, str], header: str) -> str:
    """The epochs with a noisy pass (and the last one) as a Markdown table."""
    keys = ["epoch", *COLUMNS, SECONDS]
    keys += [k for k in ("wandb val/acc", "wandb val_noisy/acc") if any(k in r for r in rows)]
    shown = [r for r in rows if r.get("val_noisy/acc")] or rows[-1:]
    lines = [header, "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in shown:
        cells = [row.get(k, "") for k in keys]
        lines.append("| " + " | ".join(_short(c) for c in cells) + " |")
    if tests:
        lines += ["", "Test: " + ", ".join(f"{k} {_short(v)}" for k, v in tests.items())]
    return "\n".join(lines) + "\n"


def _short(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number.is_integer() else f"{number:.4g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="the fit's --trainer.default_root_dir")
    parser.add_argument("--name", required=True, help="results/noise/<name>.{csv,md}")
    parser.add_argument("--command", default="", help="the fit command, written into the .md")
    parser.add_argument("--note", default="", help="a line written under the table (timing)")
    args = parser.parse_args()
    rows, tests = table(args.run)
    out = ROOT / "results/noise"
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with (out / f"{args.name}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, keys)
        writer.writeheader()
        writer.writerows(rows)
    header = f"# {args.name}\n\n`{args.command}`" if args.command else f"# {args.name}"
    text = markdown(rows, tests, header)
    if args.note:
        text += f"\n{args.note}\n"
    (out / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
