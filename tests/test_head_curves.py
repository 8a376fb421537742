"""tools/head_curves.py: per-epoch curves from run folders, the underfit table, the plot."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
import head_curves

HEADER = "epoch,step,test/acc,test/f1,test/loss,train/acc,train/f1,train/loss,"
HEADER += "val/acc,val/f1,val/loss"


def _run(root: Path, cell: str, seed: int, versions: list[list[str]], test_acc: float) -> None:
    run = root / cell / f"seed{seed}"
    for i, lines in enumerate(versions):
        path = run / "csv" / f"version_{i}" / "metrics.csv"
        path.parent.mkdir(parents=True)
        path.write_text("\n".join([HEADER, *lines]) + "\n")
    status = {"status": "ok", "cell": cell, "seed": seed, "test_acc": test_acc}
    (run / "result.json").write_text(json.dumps(status))


def _epoch(epoch: int, train: float, val: float) -> list[str]:
    """A per-step loss row, the epoch's validation row, then its training row (as Lightning)."""
    return [
        f"{epoch},{epoch * 7},,,,,,0.69,,,",
        f"{epoch},{epoch * 7 + 6},,,,,,,{val},0.5,0.6",
        f"{epoch},{epoch * 7 + 6},,,,{train},0.5,0.7,,,",
    ]


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    # seed 0: epochs 0-2, val best (0.8) first reached at epoch 1; a resumed version redoes epoch 2
    _run(
        root,
        "head-hybrid",
        0,
        [_epoch(0, 0.5, 0.6) + _epoch(1, 0.6, 0.8) + _epoch(2, 0.1, 0.1), _epoch(2, 0.7, 0.8)],
        0.75,
    )
    _run(root, "head-hybrid", 1, [_epoch(0, 0.55, 0.7) + _epoch(1, 0.65, 0.6)], 0.65)
    _run(root, "head-classical", 0, [_epoch(0, 0.9, 0.85) + _epoch(1, 1.0, 0.8)], 0.85)
    failed = root / "head-classical" / "seed1"
    failed.mkdir(parents=True)
    (failed / "result.json").write_text(json.dumps({"status": "failed", "cell": "x", "seed": 1}))
    return root


def test_collect_keeps_epoch_rows_and_the_resumed_version(runs: Path):
    rows = head_curves.collect(runs)
    hybrid0 = [r for r in rows if r["cell"] == "head-hybrid" and r["seed"] == "0"]
    assert [r["epoch"] for r in hybrid0] == ["0", "1", "2"]
    assert [r["train_acc"] for r in hybrid0] == ["0.5", "0.6", "0.7"]  # version_1 wins epoch 2
    assert [r["val_acc"] for r in hybrid0] == ["0.6", "0.8", "0.8"]
    assert all(r["train_loss"] == "0.7" for r in hybrid0)  # the epoch's loss, not a step's
    assert {r["cell"] for r in rows} == {"head-hybrid", "head-classical"}  # failed run left out


def test_summary_reads_the_tested_epoch_as_the_first_best_validation(runs: Path, tmp_path: Path):
    path = tmp_path / "curves.csv"
    head_curves.write_rows(path, head_curves.collect(runs))
    summary = {s["cell"]: s for s in head_curves.summary(head_curves.read_rows(path))}
    hybrid = summary["head-hybrid"]
    assert hybrid["seeds"] == 2 and hybrid["epochs"] == 3
    assert hybrid["last_train"] == pytest.approx([70, 65])
    assert hybrid["best_train"] == pytest.approx([70, 65])
    assert hybrid["train_at_best"] == pytest.approx([60, 55])  # epoch 1 (seed 0), epoch 0 (seed 1)
    assert hybrid["best_val"] == pytest.approx([80, 70])
    assert hybrid["gap"] == pytest.approx([60 - 75, 55 - 65])
    assert summary["head-classical"]["train_at_best"] == pytest.approx([90])


def test_report_writes_the_table_and_the_plot(runs: Path, tmp_path: Path, capsys):
    csv_path = tmp_path / "out" / "curves.csv"
    head_curves.main(["collect", str(runs), "--out", str(csv_path)])
    png, md = tmp_path / "out" / "curves.png", tmp_path / "out" / "curves.md"
    head_curves.main(["report", str(csv_path), "--plot", str(png), "--md", str(md)])
    table = md.read_text()
    assert "| head-classical | 1 | 2 | 100.0 ± 0.0 | 100.0 ± 0.0 | 90.0 ± 0.0 |" in table
    assert table in capsys.readouterr().out
    assert png.stat().st_size > 10_000


def test_collect_without_finished_runs_is_an_error(tmp_path: Path):
    with pytest.raises(SystemExit):
        head_curves.main(["collect", str(tmp_path), "--out", str(tmp_path / "c.csv")])


def test_report_plots_only_the_chosen_cells(runs: Path, tmp_path: Path):
    csv_path = tmp_path / "curves.csv"
    head_curves.main(["collect", str(runs), "--out", str(csv_path)])
    png = tmp_path / "one.png"
    head_curves.main(["report", str(csv_path), "--plot", str(png), "--cells", "head-hybrid"])
    assert png.stat().st_size > 10_000
    with pytest.raises(SystemExit):
        head_curves.main(["report", str(csv_path), "--plot", str(png), "--cells", "nope"])
