"""tools/execution_sweep.py: a trained head tested under shots and noise, resumable, paired."""

import sys
from pathlib import Path

import pytest
import torch

from hqc.main import main

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
import execution_sweep

ROOT = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HQC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def cell(tiny_data_dir, tmp_path) -> Path:
    """One finished run of a 3-qubit projection head, laid out as the ablation runner does."""
    run = tmp_path / "runs" / "head-projection" / "seed0"
    (run / "checkpoints").mkdir(parents=True)
    cli = main(
        [
            "--config", str(ROOT / "configs" / "projection.yaml"),
            "--data.init_args.source", str(tiny_data_dir),
            "--data.init_args.per_class", "4",
            "--data.init_args.batch_size", "8",
            "--model.init_args.projection.init_args.out_features", "3",
            "--seed_everything", "2",
        ],
        run=False,
    )  # fmt: skip
    (run / "config.yaml").write_text(cli.parser.dump(cli.config))
    torch.save({"state_dict": cli.model.state_dict()}, run / "checkpoints" / "best-epoch000.ckpt")
    return run.parent


def test_sweep_rows_match_direct_evaluation_and_noise_applies(cell, tmp_path):
    out = tmp_path / "sweep.csv"
    table = execution_sweep.settings([100], [0.8], [], 1024)
    rows = execution_sweep.sweep(cell, out, table)
    assert [r["setting"] for r in rows] == ["exact", "shots=100", "depolarizing=0.8"]
    assert execution_sweep.read_rows(out) == rows

    from hqc.export.export import load_checkpoint

    config, ckpt = cell / "seed0" / "config.yaml", next(cell.glob("seed0/checkpoints/*.ckpt"))
    model, cli = load_checkpoint(["--config", str(config)], ckpt)
    cli.datamodule.setup("test")
    test = cli.datamodule.test_data
    with torch.no_grad():
        predicted = model(test.texts).argmax(-1)
    direct = (predicted == torch.tensor(test.labels)).float().mean().item()
    by_setting = {r["setting"]: r for r in rows}
    assert float(by_setting["exact"]["test_acc"]) == pytest.approx(direct, abs=1e-6)
    assert by_setting["exact"]["sentences"] == str(len(test.texts)) == "32"
    # A fully depolarising 2-qubit gate leaves qubit 0 maximally mixed: <Z0> = 0 for every
    # sentence, one constant prediction, the accuracy of the balanced test split's share.
    assert float(by_setting["depolarizing=0.8"]["test_acc"]) == pytest.approx(0.5)
    assert direct != pytest.approx(0.5)  # so the noisy row cannot be the exact one
    assert by_setting["depolarizing=0.8"]["noise"] == "depolarizing 2q 0.8, 1q 0.08"
    assert by_setting["shots=100"]["shots"] == "100"


def test_sweep_resumes_without_redoing_finished_settings(cell, tmp_path, monkeypatch):
    out = tmp_path / "sweep.csv"
    execution_sweep.sweep(cell, out, execution_sweep.settings([], [], [], 1024))
    before = execution_sweep.read_rows(out)
    evaluated = []
    real = execution_sweep.evaluate

    def spy(model, datamodule, execution, limit):
        evaluated.append(execution.shots)
        return real(model, datamodule, execution, limit)

    monkeypatch.setattr(execution_sweep, "evaluate", spy)
    rows = execution_sweep.sweep(cell, out, execution_sweep.settings([64], [], [], 1024))
    assert evaluated == [64]  # exact was already in the file
    assert rows[0] == before[0] and len(rows) == 2
    execution_sweep.sweep(cell, out, execution_sweep.settings([64], [], [], 1024))
    assert evaluated == [64]


def test_report_pairs_each_setting_with_exact_on_the_same_seed(tmp_path):
    rows = [
        {"cell": "c", "seed": s, "setting": name, "test_acc": acc, "test_f1": acc}
        | {"shots": "", "noise": "", "sentences": "10", "seconds": "1.0"}
        for s, name, acc in [
            ("0", "exact", "0.8"), ("1", "exact", "0.7"),
            ("0", "shots=64", "0.7"), ("1", "shots=64", "0.7"),
        ]
    ]  # fmt: skip
    text = execution_sweep.markdown(rows)
    exact, shots = text.splitlines()[2:4]
    assert "| 75.00 ± 63.53 |" in exact and "| – |" in exact
    # paired differences -10 and 0 points: mean -5, t(0.975, 1) * 7.07 / sqrt(2) = 63.53
    assert "| -5.00 ± 63.53 |" in shots
    assert execution_sweep.plot(rows, tmp_path / "p.png").stat().st_size > 0
    presets_only = [r | {"setting": "ionq_aria+1024"} for r in rows if r["setting"] != "exact"]
    assert execution_sweep.plot(presets_only, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_cell_without_runs_is_a_user_error(tmp_path):
    from hqc.errors import UserError

    with pytest.raises(UserError, match="no seed<k>/ run"):
        execution_sweep.seed_runs(tmp_path)
