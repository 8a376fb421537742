"""The ablation matrix: every fragment is a valid substitution; studies resume per cell."""

import csv
import sys
from pathlib import Path

import pytest

from hqc.main import main

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import ablate  # noqa: E402

ABLATIONS = sorted((ROOT / "ablations").glob("*.yaml"))


@pytest.fixture(scope="module")
def base_stages():
    return main(["--config", str(ROOT / "configs/hybrid.yaml")], run=False).config.model.init_args


@pytest.mark.parametrize("fragment", ABLATIONS, ids=lambda p: p.stem)
def test_fragment_substitutes_a_component(fragment, base_stages):
    cli = main(["--config", str(ROOT / "configs/hybrid.yaml"), "--config", str(fragment)],
               run=False)  # fmt: skip
    stages = cli.config.model.init_args
    changed = [s for s in ("projection", "angle_encoder", "core", "readout")
               if stages[s] != base_stages[s]]  # fmt: skip
    assert changed, f"{fragment.name} changes no stage"
    assert cli.model.num_classes == 2  # the substituted pipeline builds end to end


def test_matrix_runs_and_resumes(tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HQC_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "study/results.csv"
    argv = [
        "--base", str(ROOT / "configs/hybrid.yaml"),
        "--ablations", str(ROOT / "ablations/no_reupload.yaml"),
        "--seeds", "0", "1", "--out", str(out), "--",
        "--data.init_args.source", str(tiny_data_dir), "--data.init_args.per_class", "4",
        "--data.init_args.batch_size", "4", "--trainer.max_epochs", "1",
    ]  # fmt: skip
    ablate.main(argv)
    rows = list(csv.DictReader(out.open()))
    assert [(r["ablation"], r["seed"]) for r in rows] == [
        ("baseline", "0"), ("baseline", "1"), ("no_reupload", "0"), ("no_reupload", "1")
    ]  # fmt: skip
    assert all(0 <= float(r["test_acc"]) <= 1 for r in rows)
    assert int(rows[2]["parameters"]) < int(rows[0]["parameters"])  # fewer PQC 1 blocks

    def no_fit(*args):
        raise AssertionError("finished cells must not run again")

    monkeypatch.setattr(ablate, "run_cell", no_fit)
    ablate.main(argv)
    assert list(csv.DictReader(out.open())) == rows


def test_missing_fragment_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ablate.main(["--ablations", str(tmp_path / "nope.yaml")])
    assert "nope.yaml" in capsys.readouterr().err
