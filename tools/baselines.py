"""The paper's classical heads on the same cached embeddings and splits as the quantum heads.

Heads: logistic regression and RBF SVCs (C=1, C=100) from scikit-learn, and hqc's MLP core
``d → h → 2`` for h ∈ {0, 48, 96, 144, 192} trained by Lightning exactly like
``configs/classical.yaml`` (Adam lr 0.01, batch 64, 40 epochs, best-``val/acc`` checkpoint
tested), and fair small heads: a fixed (untrained) PCA or random projection to k features
(:mod:`hqc.fixed_projection`, PCA fit on the training split) before a small trained MLP,
their trained and fixed parameters counted apart. Each seed is one draw of the protocol and
the heads' initialisation. Every finished (encoder, head, seed) row is written to ``--out``
atomically; a rerun skips finished rows, so a killed study resumes. ``--report`` prints the
tables (mean ± 95 % t-interval) from a CSV.

    python tools/baselines.py --source ../shared/data/sst2 --seeds 0 1 2 3 4 5 6 7 8 9 \\
        --model all-mpnet-base-v2 --out results/report/classical_heads.csv
    python tools/baselines.py --report results/report/classical_heads.csv
"""

from __future__ import annotations

import argparse
import csv
import functools
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.svm import SVC

from hqc.ablate.stats import mean_ci, paired_differences
from hqc.classifier import Classifier
from hqc.data import SentenceDataModule
from hqc.encoder import DEFAULT_MODEL, SentenceEncoder
from hqc.fixed_projection import FitFixedProjection, FixedProjection
from hqc.mlp import MLP
from hqc.setfit_encoder import SetFitEncoder

MODELS = {
    "logistic regression": lambda: LogisticRegression(max_iter=2000),
    "RBF SVC, C=1": lambda: SVC(kernel="rbf", C=1.0),
    "RBF SVC, C=100": lambda: SVC(kernel="rbf", C=100.0),
}
MLP_WIDTHS = (0, 48, 96, 144, 192)
FIXED_HEADS = (("pca", 8, 16), ("pca", 16, 12), ("pca", 32, 24), ("random", 32, 24))
"""Fair small heads (method, k, h): a fixed d → k projection, then a trained k → h → 2 MLP;
16 → 12 → 2 (230 trained) and 32 → 24 → 2 (842) sit next to the 214- and 886-parameter
quantum heads."""
FIELDS = ["encoder", "head", "seed", "trainable", "fixed", "val_acc", "test_acc", "test_f1"]
FIELDS += ["seconds"]


def parameter_count(model: LogisticRegression | SVC) -> int:
    """Numbers the fitted model stores to predict: weights, or support vectors and their duals."""
    if isinstance(model, LogisticRegression):
        return model.coef_.size + model.intercept_.size
    return model.support_vectors_.size + model.dual_coef_.size + model.intercept_.size


def fit_sklearn(make: Callable[[], LogisticRegression | SVC], xy: dict) -> dict[str, float]:
    """Fit on the training split; score validation and test."""
    model = make().fit(*xy["train"])
    x_test, y_test = xy["test"]
    return {
        "trainable": parameter_count(model),
        "fixed": 0,
        "val_acc": model.score(*xy["val"]),
        "test_acc": model.score(x_test, y_test),
        "test_f1": f1_score(y_test, model.predict(x_test), average="macro"),
    }


def fit_lightning(
    core: MLP,
    encoder: SentenceEncoder,
    data: SentenceDataModule,
    seed: int,
    epochs: int,
    projection: FixedProjection | None = None,
) -> dict[str, float]:
    """Train a Classifier head with Lightning, select on ``val/acc``, test the best checkpoint."""
    seed_everything(seed, verbose=False)
    model = Classifier(
        encoder=encoder,
        core=core,
        projection=projection,
        num_classes=data.num_classes,
        optimizer=functools.partial(torch.optim.Adam, lr=0.01),
    )
    with tempfile.TemporaryDirectory(prefix="hqc-baseline-") as root:
        best = ModelCheckpoint(dirpath=root, monitor="val/acc", mode="max")
        trainer = Trainer(
            max_epochs=epochs,
            callbacks=[best, FitFixedProjection()],
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=root,
        )
        trainer.fit(model, datamodule=data)
        # Our own checkpoint of this run; it pickles the optimizer factory (a functools.partial).
        result = trainer.test(
            model, datamodule=data, ckpt_path="best", verbose=False, weights_only=False
        )[0]
    head = [p for name, p in model.named_parameters() if not name.startswith("encoder.")]
    return {
        "trainable": sum(p.numel() for p in head if p.requires_grad),
        "fixed": sum(p.numel() for p in head if not p.requires_grad),
        "val_acc": float(best.best_model_score),
        "test_acc": result["test/acc"],
        "test_f1": result["test/f1"],
    }


def heads(epochs: int) -> dict[str, Callable]:
    """Every head by name: ``fit(xy, encoder, data, seed) -> metrics``."""
    table: dict[str, Callable] = {
        name: lambda xy, encoder, data, seed, make=make: fit_sklearn(make, xy)
        for name, make in MODELS.items()
    }
    for h in MLP_WIDTHS:
        table[f"MLP h={h}"] = lambda xy, encoder, data, seed, h=h: fit_lightning(
            MLP(hidden=h), encoder, data, seed, epochs
        )
    for method, k, h in FIXED_HEADS:
        table[f"{method.upper()} k={k}, MLP h={h}"] = (
            lambda xy, encoder, data, seed, method=method, k=k, h=h: fit_lightning(
                MLP(hidden=h), encoder, data, seed, epochs, FixedProjection(k, method, seed=seed)
            )
        )
    return table


def read_rows(path: Path) -> list[dict[str, str]]:
    """Finished rows, or none for a new study."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict]) -> None:
    """Replace the CSV atomically: a kill mid-write never loses finished rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def paired_difference(cell: list[dict[str, str]], reference: list[dict[str, str]]) -> str:
    """Test accuracy minus the reference head's on the same draws: mean ± 95 % CI (points)."""

    def by_seed(rows: list[dict[str, str]]) -> dict[str, float]:
        return {r["seed"]: float(r["test_acc"]) * 100 for r in rows}

    diffs = paired_differences(by_seed(cell), by_seed(reference))
    return "{:+.2f} ± {:.2f}".format(*mean_ci(diffs)) if diffs else "–"


def report(
    rows: list[dict[str, str]], reference: str = "logistic regression", versus: str | None = None
) -> str:
    """One markdown table per encoder: parameters, seeds, test accuracy, macro F1, and the
    paired test-accuracy difference to ``reference`` on the same draws; with ``versus`` (an
    encoder), also each head's paired difference to the same head on that encoder."""
    out = []
    for encoder in dict.fromkeys(r["encoder"] for r in rows):
        out += [
            f"\n**{encoder}**\n",
            "| head | trainable (fixed) params | seeds | test acc % (mean ± 95 % CI) "
            f"| test macro F1 % | val acc % | Δ test vs {reference} (paired) |"
            + (f" Δ test vs same head on {versus} (paired) |" if versus else ""),
            "|---|---:|---:|---|---|---|---|" + ("---|" if versus else ""),
        ]
        mine = [r for r in rows if r["encoder"] == encoder]
        baseline = [r for r in mine if r["head"] == reference]
        for head in dict.fromkeys(r["head"] for r in mine):
            cell = [r for r in mine if r["head"] == head]
            trainable = [int(r["trainable"]) for r in cell]
            fixed = int(cell[0]["fixed"])
            params = f"{round(statistics.mean(trainable)):,}" + (f" ({fixed:,})" if fixed else "")
            if min(trainable) != max(trainable):
                params = "≈ " + params
            cols = [
                "{:.2f} ± {:.2f}".format(*mean_ci([float(r[key]) * 100 for r in cell]))
                for key in ("test_acc", "test_f1", "val_acc")
            ]
            cols.append(paired_difference(cell, baseline) if head != reference else "–")
            if versus:
                other = [r for r in rows if r["encoder"] == versus and r["head"] == head]
                cols.append(paired_difference(cell, other) if encoder != versus else "–")
            out.append(f"| {head} | {params} | {len(cell)} | " + " | ".join(cols) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    """Fit every missing (head, seed) row, then print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=None, help="split folder (default: HQC_DATA_DIR)")
    parser.add_argument("--protocol", default="paper", choices=["paper", "given"])
    parser.add_argument("--per-class", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="sentence-transformers model")
    parser.add_argument("--heads", nargs="+", help="head names (default: all)")
    parser.add_argument("--epochs", type=int, default=40, help="epochs of the Lightning heads")
    parser.add_argument(
        "--setfit",
        type=int,
        metavar="ITERATIONS",
        help="use the body SetFit-tuned (this many pair iterations) on each draw's train split",
    )
    parser.add_argument("--out", type=Path, help="resumable results CSV")
    parser.add_argument("--report", type=Path, nargs="+", help="only print these CSVs' tables")
    parser.add_argument("--versus", help="report: also each head's gain over this encoder")
    args = parser.parse_args(argv)
    if args.report:
        rows = [row for path in args.report for row in read_rows(path)]
        print(report(rows, versus=args.versus))
        return

    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # one line per row instead
    table = heads(args.epochs)
    unknown = set(args.heads or []) - set(table)
    if unknown:
        parser.error(f"unknown --heads {sorted(unknown)}; choose from {list(table)}")
    chosen = args.heads or list(table)
    rows = read_rows(args.out) if args.out else []
    done = {(r["encoder"], r["head"], int(r["seed"])) for r in rows}
    frozen = None if args.setfit else SentenceEncoder(model=args.model)
    body = f"{args.model} + SetFit ({args.setfit} iterations)" if args.setfit else args.model
    for seed in args.seeds:
        if all((body, name, seed) in done for name in chosen):
            continue
        data = SentenceDataModule(
            source=args.source, protocol=args.protocol, per_class=args.per_class, seed=seed
        )
        data.setup("fit")
        encoder = frozen
        if encoder is None:
            encoder = SetFitEncoder(args.model, num_iterations=args.setfit, seed=seed)
            encoder.tune(data.train_data.texts, data.train_data.labels)
        encoder.warm(data.all_texts())  # one cache entry for every draw of a frozen body
        splits = {"train": data.train_data, "val": data.val_data, "test": data.test_data}
        xy = {s: (encoder(d.texts).numpy(), np.asarray(d.labels)) for s, d in splits.items()}
        for name in chosen:
            if (body, name, seed) in done:
                continue
            start = time.perf_counter()
            metrics = table[name](xy, encoder, data, seed)
            row = {"encoder": body, "head": name, "seed": seed, **metrics}
            row["seconds"] = f"{time.perf_counter() - start:.1f}"
            for key in ("val_acc", "test_acc", "test_f1"):
                row[key] = f"{float(row[key]):.6f}"
            rows.append(row)
            if args.out:
                write_rows(args.out, rows)
            print(
                f"seed {seed}  {name:<20} params {metrics['trainable']:>9,}  "
                f"val {row['val_acc']}  test {row['test_acc']}  (n_test={len(xy['test'][1])})",
                flush=True,
            )
    print(report([r for r in rows if r["encoder"] == body]))


if __name__ == "__main__":
    main()
