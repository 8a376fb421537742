"""tools/baselines.py: the paper's scikit-learn heads on the cached embeddings and splits."""

import sys
from pathlib import Path

import pytest

from hqc.errors import UserError

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
import baselines


def test_baselines_write_resumable_rows_and_a_report(tiny_data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HQC_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "heads.csv"
    heads = ["logistic regression", "MLP h=0", "PCA k=4, MLP h=2"]
    monkeypatch.setattr(baselines, "FIXED_HEADS", (("pca", 4, 2),))
    argv = ["--source", str(tiny_data_dir), "--per-class", "4", "--epochs", "2", "--out", str(out)]
    baselines.main([*argv, "--seeds", "0", "1", "--heads", *heads])
    rows = baselines.read_rows(out)
    assert [(r["head"], r["seed"]) for r in rows] == [(h, s) for s in "01" for h in heads]
    params = {r["head"]: (int(r["trainable"]), int(r["fixed"])) for r in rows}
    assert params == {
        "logistic regression": (385, 0),  # 384 weights + bias
        "MLP h=0": (770, 0),  # 384 → 2 softmax layer
        "PCA k=4, MLP h=2": (4 * 2 + 2 + 2 * 2 + 2, 4 * 384 + 384),  # PCA fixed, MLP trained
    }
    assert "(n_test=32)" in capsys.readouterr().out
    first = out.read_text()
    baselines.main([*argv, "--seeds", "0", "1", "2", "--heads", heads[0]])  # resume: 1 new row
    assert out.read_text().startswith(first)
    assert len(baselines.read_rows(out)) == 7
    baselines.main(["--report", str(out)])
    table = capsys.readouterr().out
    assert "| logistic regression | 385 | 3 |" in table
    assert "| PCA k=4, MLP h=2 | 16 (1,920) | 2 |" in table


def test_mean_ci_is_a_t_interval():
    mean, half = baselines.mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.302653 * 1.0 / 3**0.5, rel=1e-6)  # t(0.975, 2) · s / √n


def test_paired_difference_matches_seeds():
    ref = [{"seed": "0", "test_acc": "0.80"}, {"seed": "1", "test_acc": "0.70"}]
    cell = [{"seed": "1", "test_acc": "0.72"}, {"seed": "0", "test_acc": "0.81"}]
    mean, half = baselines.mean_ci([1.0, 2.0])  # differences in points: seed 0 +1, seed 1 +2
    assert baselines.paired_difference(cell, ref) == f"{mean:+.2f} ± {half:.2f}"
    assert baselines.paired_difference(cell, []) == "–"


def test_report_versus_another_body_pairs_the_same_head():
    def row(encoder, head, seed, acc):
        return {"encoder": encoder, "head": head, "seed": seed, "trainable": "3", "fixed": "0",
                "val_acc": acc, "test_acc": acc, "test_f1": acc}  # fmt: skip

    rows = [row("frozen", "LR", s, a) for s, a in (("0", "0.70"), ("1", "0.72"))]
    rows += [row("tuned", "LR", s, a) for s, a in (("1", "0.80"), ("0", "0.80"))]
    table = baselines.report(rows, reference="LR", versus="frozen")
    mean, half = baselines.mean_ci([10.0, 8.0])
    line = next(line for line in table.splitlines() if line.startswith("| LR | 3 | 2 | 80.00"))
    assert line.endswith(f"| – | +{mean:.2f} ± {half:.2f} |")  # tuned − frozen: +10, +8


def test_parameter_count_of_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [0, 1, 1])
    assert baselines.parameter_count(model) == 3


def test_missing_source_names_it(tmp_path):
    with pytest.raises(UserError, match="nowhere"):
        baselines.main(["--source", str(tmp_path / "nowhere")])
