"""Aggregation of a matrix's runs: hand-computed intervals, seed pairing, OLS effects, plots."""

import csv
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm

from hqc.ablate import report
from hqc.ablate.stats import main_effects, mean_ci, paired_differences
from hqc.errors import UserError

T_975_2DF = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2), from tables


def _row(cell, seed, test_acc, **extra):
    row = {
        "matrix": "m", "design": "full", "cell": cell, "paired_with": "head-a", "head": cell[5:],
        "seed": str(seed), "status": "ok", "parameters": "100", "train_seconds": "2.0",
        "epochs": "3", "val_acc": "0.5", "test_acc": str(test_acc), "test_f1": str(test_acc),
        "error": "",
    }  # fmt: skip
    return row | extra


def _write(path, rows):
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_mean_ci_is_the_t_interval_by_hand():
    mean, half = mean_ci([70.0, 72.0, 74.0])  # sd 2, n 3
    assert mean == pytest.approx(72.0)
    assert half == pytest.approx(T_975_2DF * 2 / 3**0.5)
    assert mean_ci([5.0]) == (5.0, 0.0)


def test_paired_differences_pair_by_seed_not_position():
    cell = {2: 80.0, 0: 75.0, 1: 74.0, 3: 99.0}  # seed 3 has no reference draw
    reference = {0: 70.0, 1: 72.0, 2: 74.0}
    assert paired_differences(cell, reference) == [6.0, 5.0, 2.0]


def test_cell_table_numbers_match_a_hand_computation():
    rows = [_row("head-a", s, v) for s, v in [(0, 0.70), (1, 0.72), (2, 0.74)]]
    # cell b listed out of seed order, plus a seed the reference lacks and a failed run
    rows += [_row("head-b", s, v, parameters="120") for s, v in [(2, 0.80), (0, 0.75), (1, 0.74)]]
    rows += [_row("head-b", 3, 0.99), _row("head-b", 4, "", status="failed", error="boom")]
    lines = report.cell_table(rows).splitlines()
    a, b = lines[2], lines[3]
    half_a = T_975_2DF * 2 / 3**0.5  # 70, 72, 74
    assert f"| 72.00 ± {half_a:.2f} |" in a
    assert "(reference)" in a
    # b vs a on seeds 0, 1, 2: +5, +2, +6 points; seed 3 unpaired, seed 4 failed
    diffs = np.array([5.0, 2.0, 6.0])
    half_d = T_975_2DF * diffs.std(ddof=1) / 3**0.5
    assert f"| +4.33 ± {half_d:.2f} (n=3) |" in b
    values = np.array([80.0, 75.0, 74.0, 99.0])
    half_b = 3.182446305284263 * values.std(ddof=1) / 2  # t(0.975, 3), n = 4
    assert f"| {values.mean():.2f} ± {half_b:.2f} |" in b
    assert "| 4 (1) |" in b and "| 100–120 |" in b


def _screen_rows(rng):
    """A replicated 2^(3-1) design (c = ab) with known effects a +6, b −4, c 0 (points)."""
    rows = []
    for seed in range(3):
        for a, b in [(-1, -1), (1, -1), (-1, 1), (1, 1)]:
            c = a * b
            y = 70 + 3 * a - 2 * b + rng.normal(0, 1)
            levels = {"a": ["lo", "hi"][a > 0], "b": ["x", "y"][b > 0], "c": ["no", "yes"][c > 0]}
            row = _row("cell", seed, y / 100, design="fractional", paired_with="")
            del row["head"]
            row |= levels | {"code_a": str(a), "code_b": str(b), "code_c": str(c)}
            row["cell"] = "__".join(f"{k}-{v}" for k, v in levels.items())
            rows.append(row)
    return rows


def test_main_effects_agree_with_statsmodels():
    rng = np.random.default_rng(0)
    rows = _screen_rows(rng)
    x = np.array([[float(r[f"code_{f}"]) for f in "abc"] for r in rows])
    y = np.array([float(r["test_acc"]) * 100 for r in rows])
    fit = sm.OLS(y, sm.add_constant(x)).fit()
    factors, found = report.effects(rows)
    assert factors == ["a", "b", "c"]
    for effect, beta, se, (low, high) in zip(
        found, fit.params[1:], fit.bse[1:], fit.conf_int(0.05)[1:], strict=True
    ):
        assert effect.effect == pytest.approx(2 * beta, rel=1e-10)
        assert effect.se == pytest.approx(2 * se, rel=1e-10)
        assert effect.effect + effect.ci == pytest.approx(2 * high, rel=1e-10)
        assert effect.effect - effect.ci == pytest.approx(2 * low, rel=1e-10)
    assert found[0].effect == pytest.approx(6, abs=1.5) and found[1].effect == pytest.approx(
        -4, abs=1.5
    )
    table = report.effects_table(rows)
    assert "| a | lo | hi |" in table and "| c | no | yes |" in table


def test_main_effects_reject_a_design_without_residual_freedom():
    with pytest.raises(ValueError, match="degrees of freedom"):
        main_effects(np.array([[-1.0], [1.0]]), np.array([1.0, 2.0]), ["a"])


def _is_png(path):
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_from_a_csv_alone_writes_tables_and_plots(tmp_path, capsys):
    rows = []
    for head, offset in [("hybrid", 0.0), ("classical", 0.05)]:
        for qubits in (4, 8):
            for seed in range(3):
                acc = 0.6 + 0.01 * qubits + offset + 0.01 * seed
                row = _row(f"qubits-{qubits}__head-{head}", seed, acc)
                del row["head"]
                row |= {"qubits": str(qubits), "head": head}
                row["paired_with"] = f"qubits-{qubits}__head-hybrid"
                rows.append(row)
    (tmp_path / "in").mkdir()
    source = _write(tmp_path / "in/sweep.csv", rows)
    report.report_main([str(source), "--out", str(tmp_path / "out")])
    text = capsys.readouterr().out
    assert "+5.00 ± 0.00 (n=3)" in text  # classical − hybrid at the same qubits, every seed
    assert (tmp_path / "out/m.csv").read_text() == source.read_text()
    assert (tmp_path / "out/m.md").read_text().startswith("### m (full design, 4 cells")
    for name in ("m_cells.png", "m_accuracy_vs_qubits.png"):
        assert _is_png(tmp_path / "out" / name)
    assert not (tmp_path / "out/m_main_effects.png").exists()  # not a screen

    screen = _write(tmp_path / "screen.csv", _screen_rows(np.random.default_rng(1)))
    report.report_main([str(screen), "--out", str(tmp_path / "screen")])
    assert "Main effects" in capsys.readouterr().out
    assert _is_png(tmp_path / "screen/m_main_effects.png")
    assert _is_png(tmp_path / "screen/m_cells.png")


def test_committed_qubit_sweep_table_is_what_its_committed_csv_gives(tmp_path, capsys):
    """REPORT.md's sweep regenerates without runs/: the committed rows give the committed table."""
    committed = Path(__file__).parents[1] / "results/ablate"
    report.report_main([str(committed / "qubits.csv"), "--out", str(tmp_path), "--no-plots"])
    capsys.readouterr()
    assert (tmp_path / "qubits.md").read_text() == (committed / "qubits.md").read_text()
    assert (tmp_path / "qubits.csv").read_text() == (committed / "qubits.csv").read_text()


def test_csvs_from_different_versions_merge_with_the_union_of_columns(tmp_path, capsys):
    """Seeds added by a later hqc (one more column) merge with the committed rows."""
    old = [_row("a", seed, 0.6 + 0.01 * seed) for seed in range(3)]
    new = [_row("a", seed, 0.7) | {"matched_with": "b"} for seed in (3, 4)]
    (tmp_path / "new").mkdir()
    paths = [_write(tmp_path / "m.csv", old), _write(tmp_path / "new/m.csv", new)]
    report.report_main([*map(str, paths), "--out", str(tmp_path / "out"), "--no-plots"])
    capsys.readouterr()
    with (tmp_path / "out/m.csv").open(newline="") as f:
        merged = list(csv.DictReader(f))
    assert [r["seed"] for r in merged] == ["0", "1", "2", "3", "4"]
    assert [r["matched_with"] for r in merged] == ["", "", "", "b", "b"]
    assert list(tmp_path.glob("out/.*")) == []  # no temporary file left behind


def test_missing_csv_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"nope\.csv"):
        report.report_main([str(tmp_path / "nope.csv")])


def _matrix(tmp_path, text):
    """A two-seed matrix file over configs/hybrid.yaml with ``text``'s factors; (path, matrix)."""
    from hqc.ablate.matrix import load_matrix

    path = tmp_path / "m.yaml"
    path.write_text(
        f"base: {Path(__file__).parents[1] / 'configs/hybrid.yaml'}\nseeds: [0, 1]\n" + text
    )
    return path, load_matrix(path)


def test_collect_reads_result_json_in_run_order_and_pairs_by_reference(tmp_path, capsys):
    from hqc.ablate.plan import runs
    from hqc.ablate.record import write_json

    path, matrix = _matrix(
        tmp_path,
        "reference: {head: h}\nfactors:\n  qubits: {'4': {}, '8': {}}\n  head: {h: {}, c: {}}\n",
    )
    plan = runs(matrix, tmp_path / "runs")
    for i, run in enumerate(plan):
        if run.cell.name == "qubits-8__head-c" and run.seed == 1:
            continue  # unfinished: no result.json
        result = {"schema": 1, "matrix": "m", "cell": run.cell.name, "seed": run.seed}
        result |= {"levels": run.cell.levels, "status": "ok", "error": None}
        result |= {"parameters": 10 + i, "train_seconds": 1.5, "epochs": 2}
        result |= {"val_acc": 0.5, "test_acc": 0.5 + i / 100, "test_f1": 0.4}
        if run.cell.name == "qubits-4__head-c" and run.seed == 1:
            result = {**result, "status": "failed", "error": "boom", "test_acc": None}
        run.directory.mkdir(parents=True)
        write_json(run.directory / "result.json", result)
    rows = report.collect(matrix, tmp_path / "runs")
    assert [(r["cell"], r["seed"]) for r in rows] == [
        (run.cell.name, str(run.seed)) for run in plan
    ][:-1]
    assert {r["cell"]: r["paired_with"] for r in rows} == {
        "qubits-4__head-h": "qubits-4__head-h", "qubits-8__head-h": "qubits-8__head-h",
        "qubits-4__head-c": "qubits-4__head-h", "qubits-8__head-c": "qubits-8__head-h",
    }  # fmt: skip
    assert rows[0]["code_qubits"] == "-1" and rows[2]["code_qubits"] == "1"
    assert rows[5]["status"] == "failed" and rows[5]["error"] == "boom"
    assert rows[5]["test_acc"] == ""
    report.report_main([str(path), "--runs", str(tmp_path / "runs"), "--no-plots"])
    table = capsys.readouterr().out
    # qubits-4 head-c vs head-h on seed 0 only (its seed 1 failed): runs 4 vs 0 → +4 points
    assert "| 4 | c | 1 (1) |" in table and "+4.00 ± 0.00 (n=1)" in table
    assert (tmp_path / "runs/m.csv").is_file()


def test_each_cell_is_also_compared_with_the_classical_cell_matched_to_it(tmp_path, capsys):
    """A level with ``match_parameters: x`` is x's matched competitor: its own Δ column."""
    from hqc.ablate.plan import runs
    from hqc.ablate.record import write_json

    _, matrix = _matrix(
        tmp_path,
        "reference: {head: c}\nfactors:\n  head:\n    c: {match_parameters: q}\n    q: {}\n"
        "    big: {}\n    c_big: {match_parameters: big}\n",
    )
    accuracy = {"c": 0.70, "q": 0.60, "big": 0.66, "c_big": 0.72}
    for run in runs(matrix, tmp_path / "runs"):
        result = {"schema": 1, "matrix": "m", "cell": run.cell.name, "seed": run.seed}
        result |= {"levels": run.cell.levels, "status": "ok", "error": None, "epochs": 2}
        result |= {"parameters": 10, "train_seconds": 1.0, "val_acc": 0.5, "test_f1": 0.4}
        result["test_acc"] = accuracy[run.cell.levels["head"]] + run.seed / 100
        run.directory.mkdir(parents=True)
        write_json(run.directory / "result.json", result)
    rows = report.collect(matrix, tmp_path / "runs")
    assert {r["cell"]: r["matched_with"] for r in rows} == {
        "head-c": "", "head-q": "head-c", "head-big": "head-c_big", "head-c_big": "",
    }  # fmt: skip
    table = report.cell_table(rows)
    line = next(x for x in table.splitlines() if x.startswith("| big |"))
    # big vs the reference c: -4 points; vs its own matched c_big: -6 points
    assert "| -4.00 ± 0.00 (n=2) | head-c | -6.00 ± 0.00 (n=2) vs head-c_big |" in line


def test_a_matrix_report_merges_into_the_csv_in_out_instead_of_shrinking_it(tmp_path, capsys):
    """Rows measured on another machine survive; a re-run replaces its row; --replace drops."""
    from hqc.ablate.plan import runs
    from hqc.ablate.record import write_json

    path, matrix = _matrix(tmp_path, "factors:\n  head: {h: {}, c: {}}\n")
    for run in runs(matrix, tmp_path / "runs"):
        result = {"schema": 1, "matrix": "m", "cell": run.cell.name, "seed": run.seed}
        result |= {"levels": run.cell.levels, "status": "ok", "error": None, "epochs": 2}
        result |= {"parameters": 10, "train_seconds": 1.0, "val_acc": 0.5, "test_f1": 0.4}
        result["test_acc"] = 0.8
        run.directory.mkdir(parents=True)
        write_json(run.directory / "result.json", result)
    committed = [_row("head-h", seed, 0.6, head="h") for seed in (0, 5, 6)]
    (tmp_path / "out").mkdir()
    _write(tmp_path / "out/m.csv", committed)
    argv = [str(path), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")]
    report.report_main([*argv, "--no-plots"])
    assert "kept 2 rows" in capsys.readouterr().err
    merged = report.read_rows([tmp_path / "out/m.csv"])
    assert [(r["cell"], r["seed"], r["test_acc"]) for r in merged] == [
        ("head-h", "0", "0.8"), ("head-h", "5", "0.6"), ("head-h", "6", "0.6"),
        ("head-h", "1", "0.8"), ("head-c", "0", "0.8"), ("head-c", "1", "0.8"),
    ]  # fmt: skip
    report.report_main([*argv, "--no-plots", "--replace"])
    capsys.readouterr()
    assert len(report.read_rows([tmp_path / "out/m.csv"])) == 4


def test_csvs_with_the_same_run_count_it_once_the_later_file_winning(tmp_path):
    first = _write(tmp_path / "a.csv", [_row("a", 0, 0.5), _row("a", 1, 0.5)])
    second = _write(tmp_path / "b.csv", [_row("a", 1, 0.9), _row("a", 2, 0.9)])
    rows = report.read_rows([first, second])
    assert [(r["seed"], r["test_acc"]) for r in rows] == [("0", "0.5"), ("1", "0.9"), ("2", "0.9")]


def test_merging_more_rows_into_the_out_csv_rewrites_it(tmp_path, capsys):
    out = _write(tmp_path / "m.csv", [_row("a", 0, 0.5)])
    more = _write(tmp_path / "more.csv", [_row("a", 1, 0.7)])
    report.report_main([str(out), str(more), "--out", str(tmp_path), "--no-plots"])
    capsys.readouterr()
    assert [r["seed"] for r in report.read_rows([out])] == ["0", "1"]


def test_rows_without_a_matrix_column_are_read_whole(tmp_path):
    # the execution sweep writes several rows per (cell, seed), one per setting
    rows = [{"cell": "a", "seed": "0", "shots": str(shots)} for shots in (64, 1024)]
    path = _write(tmp_path / "sweep.csv", rows)
    again = _write(tmp_path / "again.csv", rows[:1])
    assert [r["shots"] for r in report.read_rows([path, again])] == ["64", "1024", "64"]
