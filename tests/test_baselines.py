"""tools/baselines.py: the paper's scikit-learn heads on the cached embeddings and splits."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
import baselines


def test_baselines_report_every_model_and_seed(tiny_data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HQC_CACHE_DIR", str(tmp_path / "cache"))
    baselines.main(["--source", str(tiny_data_dir), "--per-class", "4", "--seeds", "0", "1"])
    out = capsys.readouterr().out
    for name in baselines.MODELS:
        assert out.count(f"{name:<20} ") == 3  # two seeds and the summary line
    assert "params       385" in out  # logistic regression: 384 weights + bias
    assert "(n_test=32)" in out


def test_parameter_count_of_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], [0, 1, 1])
    assert baselines.parameter_count(model) == 3


def test_missing_source_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        baselines.main(["--source", str(tmp_path / "nowhere")])
