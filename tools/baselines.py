"""The paper's scikit-learn baselines on the same cached embeddings and splits as the heads.

Logistic regression and RBF SVCs (C=1, C=100) fit on the training split of each seed's draw;
prints validation/test accuracy and each model's parameter count, then mean ± std over seeds.

    python tools/baselines.py --source ../shared/data/sst2 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from hqc.data import SentenceDataModule
from hqc.encoder import DEFAULT_MODEL, SentenceEncoder

MODELS = {
    "logistic regression": lambda: LogisticRegression(max_iter=2000),
    "RBF SVC, C=1": lambda: SVC(kernel="rbf", C=1.0),
    "RBF SVC, C=100": lambda: SVC(kernel="rbf", C=100.0),
}


def parameter_count(model: LogisticRegression | SVC) -> int:
    """Numbers the fitted model stores to predict: weights, or support vectors and their duals."""
    if isinstance(model, LogisticRegression):
        return model.coef_.size + model.intercept_.size
    return model.support_vectors_.size + model.dual_coef_.size + model.intercept_.size


def main(argv: list[str] | None = None) -> None:
    """Fit every baseline for every seed and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=None, help="split folder (default: HQC_DATA_DIR)")
    parser.add_argument("--protocol", default="paper", choices=["paper", "given"])
    parser.add_argument("--per-class", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="sentence-transformers model")
    args = parser.parse_args(argv)

    encoder = SentenceEncoder(model=args.model)
    results: dict[str, list[float]] = {name: [] for name in MODELS}
    for seed in args.seeds:
        data = SentenceDataModule(
            source=args.source, protocol=args.protocol, per_class=args.per_class, seed=seed
        )
        data.setup("fit")
        splits = {"train": data.train_data, "val": data.val_data, "test": data.test_data}
        xy = {}
        for name, split in splits.items():
            encoder.warm(split.texts)
            xy[name] = (encoder(split.texts).numpy(), np.asarray(split.labels))
        for name, make in MODELS.items():
            model = make().fit(*xy["train"])
            val, test = (model.score(*xy[s]) for s in ("val", "test"))
            results[name].append(test)
            print(
                f"seed {seed}  {name:<20} params {parameter_count(model):>9,}  "
                f"val {val:.2%}  test {test:.2%}  (n_test={len(xy['test'][1])})"
            )
    print(f"\nencoder {args.model}, protocol {args.protocol}, seeds {args.seeds}")
    for name, accs in results.items():
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{name:<20} test accuracy {statistics.mean(accs):.2%} ± {spread:.2%}")


if __name__ == "__main__":
    main()
