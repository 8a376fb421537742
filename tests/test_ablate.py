"""``python -m hqc.ablate run``: designs, configs per run, kill and resume, failures, Ray.

Runs are real ``python -m hqc fit`` children on the tiny data with ``user_components.HashEncoder``
(no transformer to load), so a child costs mostly the interpreter's start-up.
"""

import os
import signal
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import yaml

from hqc.ablate.__main__ import main as ablate_main
from hqc.ablate.design import cells, coded, codes
from hqc.ablate.matrix import load_matrix
from hqc.ablate.plan import resolved_config, runs
from hqc.ablate.record import read_json, read_result
from hqc.errors import UserError, run_guarded
from hqc.main import main

ROOT = Path(__file__).parents[1]
TESTS = Path(__file__).parent
FRAGMENTS = [
    p for p in sorted((ROOT / "ablations").glob("*.yaml"))
    if "factors" not in (yaml.safe_load(p.read_text()) or {})
]  # fmt: skip
BROKEN = "set exactly one of core.hidden or core.parameters"


@pytest.fixture(autouse=True)
def _children_env(tmp_path, monkeypatch):
    """Children (and Ray's workers) find the test components and a private cache."""
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("HQC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def tiny_base(tmp_path: Path, data_dir: Path, epochs: int = 3, dim: int = 32) -> Path:
    """A fragment putting any shipped config on the tiny data with the hash encoder."""
    return write(tmp_path / "tiny.yaml", {
        "trainer": {"max_epochs": epochs},
        "model": {"init_args": {"encoder": {"class_path": "user_components.HashEncoder",
                                            "init_args": {"dim": dim}}}},
        "data": {"init_args": {"source": str(data_dir), "per_class": 4, "batch_size": 4}},
    })  # fmt: skip


def two_level_matrix(tmp_path: Path, k: int, design) -> Path:
    factors = {f"f{i}": {"lo": {}, "hi": {}} for i in range(k)}
    return write(tmp_path / "screen.yaml", {
        "base": str(ROOT / "configs/classical.yaml"), "design": design, "factors": factors,
    })  # fmt: skip


# --- designs ------------------------------------------------------------------------------


def test_full_and_ofat_designs_expand_to_the_expected_cells(tmp_path):
    factors = {"a": {"x": {}, "y": {}, "z": {}}, "b": {"p": {}, "q": {}}, "c": {"u": {}, "v": {}}}
    base = str(ROOT / "configs/classical.yaml")
    full = load_matrix(write(tmp_path / "full.yaml", {"base": base, "factors": factors,
                                                      "seeds": [0, 1]}))  # fmt: skip
    combos = [tuple(c.levels.values()) for c in cells(full)]
    assert sorted(combos) == sorted(
        (a, b, c) for a in "xyz" for b in "pq" for c in "uv"
    )  # every combination exactly once
    assert len(runs(full, tmp_path / "out")) == 24  # 12 cells × 2 seeds

    ofat = load_matrix(write(tmp_path / "ofat.yaml", {"base": base, "factors": factors,
                                                      "design": "ofat"}))  # fmt: skip
    found = cells(ofat)
    assert found[0].levels == {"a": "x", "b": "p", "c": "u"}
    assert len(found) == 1 + 2 + 1 + 1
    for cell in found[1:]:  # exactly one factor away from the base cell
        assert sum(cell.levels[f] != found[0].levels[f] for f in factors) == 1


def test_fractional_generators_give_the_generator_relations(tmp_path):
    matrix = load_matrix(
        two_level_matrix(tmp_path, 5, {"type": "fractional", "generators": "a b c ab ac"})
    )
    x = coded(matrix)
    assert x.shape == (8, 5)
    np.testing.assert_array_equal(x[:, 3], x[:, 0] * x[:, 1])  # d = ab
    np.testing.assert_array_equal(x[:, 4], x[:, 0] * x[:, 2])  # e = ac
    assert (x.sum(0) == 0).all()  # balanced
    found = cells(matrix)
    assert len(found) == 8
    for row, cell in zip(x, found, strict=True):  # −1 → first level, +1 → second
        assert [codes(matrix, cell)[f"f{i}"] for i in range(5)] == row.astype(int).tolist()
        assert all(cell.levels[f"f{i}"] == ("hi" if v > 0 else "lo") for i, v in enumerate(row))


def _main_effects_clear_of_two_factor_interactions(x: np.ndarray) -> bool:
    k = x.shape[1]
    return all(
        x[:, i] @ (x[:, j] * x[:, m]) == 0
        for i in range(k) for j, m in combinations(range(k), 2) if i not in (j, m)
    )  # fmt: skip


def test_resolution_iv_screen_of_seven_factors_has_16_clear_runs(tmp_path):
    x = coded(load_matrix(two_level_matrix(tmp_path, 7, {"type": "fractional", "resolution": 4})))
    assert x.shape == (16, 7)
    np.testing.assert_array_equal(x.T @ x, 16 * np.eye(7))  # balanced and orthogonal
    assert _main_effects_clear_of_two_factor_interactions(x)
    saturated = {"type": "fractional", "generators": "a b c ab ac bc abc"}
    x3 = coded(load_matrix(two_level_matrix(tmp_path, 7, saturated)))
    assert x3.shape == (8, 7)  # 8 runs (resolution III) alias main effects with interactions
    assert not _main_effects_clear_of_two_factor_interactions(x3)


def test_plackett_burman_is_balanced_and_orthogonal(tmp_path):
    matrix = load_matrix(two_level_matrix(tmp_path, 7, "plackett_burman"))
    x = coded(matrix)
    assert x.shape == (8, 7)
    np.testing.assert_array_equal(x.T @ x, 8 * np.eye(7))
    assert len(cells(matrix)) == 8


# --- matrix files: fragments as levels, mistakes named ------------------------------------


def test_every_fragment_is_a_level_whose_resolved_config_builds(tmp_path, tiny_data_dir):
    base = tiny_base(tmp_path, tiny_data_dir, dim=384)  # MiniLM's width: 9-qubit sQEs
    levels = {"none": {}} | {p.stem: str(p) for p in FRAGMENTS}
    matrix = load_matrix(write(tmp_path / "fragments.yaml", {
        "base": [str(ROOT / "configs/hybrid.yaml"), str(base)], "design": "ofat",
        "factors": {"ablation": levels},
    }))  # fmt: skip
    stages = {}
    for run in runs(matrix, tmp_path / "out"):
        name = run.cell.levels["ablation"]
        config = tmp_path / f"{name}.yaml"
        config.write_text(resolved_config(matrix, run))
        assert main(["--config", str(config)], run=False).model.num_classes == 2  # it builds
        model = yaml.safe_load(config.read_text())["model"]["init_args"]
        stages[name] = {
            s: model[s] for s in ("encoder", "projection", "angle_encoder", "core", "readout")
        }
    assert set(stages) == {"none", *(p.stem for p in FRAGMENTS)}
    for name in stages.keys() - {"none"}:
        assert stages[name] != stages["none"], f"{name} changes no stage"


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ({"factor": {}}, "unknown key 'factor'"),
        ({"reference": {"width": "4"}}, "unknown factor 'width'"),
        ({"reference": {"core": "huge"}}, "unknown level 'huge'"),
        ({"factors": {"core": {"a": {}, "b": {"match_parameters": "c"}}}}, "unknown level 'c'"),
        ({"factors": {"core": {"a": {"sett": {}}}}}, "unknown key 'sett'"),
        ({"design": {"type": "fractional", "generators": "a b"}}, "2 words for 1 factors"),
    ],
)
def test_matrix_mistakes_are_rejected_by_name(tmp_path, edit, named):
    raw = {"base": str(ROOT / "configs/classical.yaml"),
           "factors": {"core": {"a": {}, "b": {}}}} | edit  # fmt: skip
    with pytest.raises(UserError, match=named):
        load_matrix(write(tmp_path / "bad.yaml", raw))


@pytest.mark.parametrize(
    ("key", "named"),
    [
        ("model.init_args.core.init_args.hiden", "model.core: Option 'hiden' is not accepted"),
        ("trainer.max_epoch", "--trainer.max_epoch"),  # not taken for max_epochs
    ],
)
def test_unknown_setting_is_one_message_naming_it(tmp_path, tiny_data_dir, capsys, key, named):
    path = write(tmp_path / "typo.yaml", {
        "base": [str(ROOT / "configs/classical.yaml"), str(tiny_base(tmp_path, tiny_data_dir))],
        "factors": {"core": {"a": {"set": {key: 4}}}},
    })  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        run_guarded(lambda: ablate_main(["run", str(path), "--dry-run"]))
    assert exit_.value.code == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert error.startswith(f"error: {path}: cell core-a: ") and named in error


def test_wandb_runs_get_the_matrix_as_group_and_levels_as_tags(
    tmp_path, tiny_data_dir, monkeypatch
):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    base = [str(ROOT / "configs/classical.yaml"), str(tiny_base(tmp_path, tiny_data_dir))]
    factors = {"core": {"a": {}, "b": {"set": {"model.init_args.core.init_args.parameters": 40}}}}
    tracked = load_matrix(write(tmp_path / "w.yaml", {
        "name": "study", "base": [*base, str(ROOT / "configs/logger/wandb.yaml")],
        "seeds": [7], "factors": factors,
    }))  # fmt: skip
    run = runs(tracked, tmp_path / "out")[1]
    config = tmp_path / "wandb_run.yaml"
    config.write_text(resolved_config(tracked, run))
    logger = main(["--config", str(config)], run=False).trainer.logger
    assert type(logger).__name__ == "WandbLogger"
    assert logger._wandb_init["group"] == "study"
    assert logger._wandb_init["tags"] == ["core=b", "seed=7"]
    assert logger._wandb_init["name"] == "study/core-b/seed7"
    assert os.environ["WANDB_MODE"] == "offline"  # hqc.main's default unless the user sets one

    plain = load_matrix(write(tmp_path / "p.yaml", {"base": base, "factors": factors}))
    logger = yaml.safe_load(resolved_config(plain, runs(plain, tmp_path / "out")[0]))
    assert logger["trainer"]["logger"]["class_path"] == "lightning.pytorch.loggers.CSVLogger"


# --- running: kill, resume, failures, Ray --------------------------------------------------


def _wait_for(condition, process: subprocess.Popen, what: str, limit: float = 240) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert process.poll() is None, f"the runner ended before {what}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.3)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _attempts(run_dir: Path) -> int:
    return (run_dir / "stderr.log").read_text().count("=== hqc.ablate attempt")


def test_runner_killed_mid_matrix_resumes_without_losing_or_repeating_runs(tmp_path, tiny_data_dir):
    """SIGKILL the runner while one run hangs in epoch 1; the same command finishes the matrix.

    The finished run is not started again, the hanging run's child dies with the runner and
    resumes from its last checkpoint, and a broken cell fails alone with its error recorded.
    """
    marker = tmp_path / "stalled"
    stall = write(tmp_path / "stall.yaml", {"trainer": {"callbacks": [{
        "class_path": "user_components.StallAt",
        "init_args": {"epoch": 1, "marker": str(marker)}}]}})  # fmt: skip
    path = write(tmp_path / "matrix.yaml", {
        "name": "killed",
        "base": [str(ROOT / "configs/classical.yaml"), str(tiny_base(tmp_path, tiny_data_dir))],
        "root": str(tmp_path / "runs"),
        "factors": {"core": {
            "small": {"set": {"model.init_args.core.init_args.parameters": 40}},
            "stalled": {"config": str(stall)},
            "broken": {"set": {"model.init_args.core.init_args.hidden": 4}},
        }},
    })  # fmt: skip
    small, stalled, broken = (tmp_path / f"runs/core-{c}/seed0" for c in
                              ("small", "stalled", "broken"))  # fmt: skip
    runner = subprocess.Popen(
        [sys.executable, "-m", "hqc.ablate", "run", str(path), "--workers", "2"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_for(lambda: marker.exists() and read_result(small), runner, "a run hang")
        runner.send_signal(signal.SIGKILL)
    finally:
        runner.wait()
    hung = int(marker.read_text())
    deadline = time.monotonic() + 30
    while _alive(hung):  # its child dies with the runner (PR_SET_PDEATHSIG)
        assert time.monotonic() < deadline, "the hanging child outlived its runner"
        time.sleep(0.2)
    assert read_result(stalled) is None and (stalled / "checkpoints/last.ckpt").exists()
    first = (small / "result.json").read_text(), (small / "result.json").stat().st_mtime_ns

    assert ablate_main(["run", str(path), "--workers", "2"]) == 1  # one failed run

    assert ((small / "result.json").read_text(), (small / "result.json").stat().st_mtime_ns) \
        == first  # fmt: skip
    assert _attempts(small) == 1 and read_result(small)["attempts"] == 1
    resumed = read_result(stalled)
    assert resumed["status"] == "ok" and resumed["attempts"] == _attempts(stalled) == 2
    assert "resumed from" in (stalled / "stderr.log").read_text()
    assert resumed["epochs"] == 3 and 0 <= resumed["test_acc"] <= 1
    failed = read_result(broken)
    assert failed["status"] == "failed" and failed["returncode"] == 2
    assert BROKEN in failed["error"] and "test_acc" not in failed
    assert failed["levels"] == {"core": "broken"} and failed["run"] == "core-broken/seed0"

    states = {d: read_json(d / "state.json") for d in (small, stalled, broken)}
    assert ablate_main(["run", str(path)]) == 1  # nothing left to run: nothing starts
    assert {d: read_json(d / "state.json") for d in states} == states


def test_ray_executor_runs_the_matrix_on_a_local_instance(tmp_path, tiny_data_dir):
    import ray  # in the test extra

    path = write(tmp_path / "matrix.yaml", {
        "name": "on_ray", "seeds": [0, 1], "root": str(tmp_path / "runs"),
        "base": [str(ROOT / "configs/classical.yaml"),
                 str(tiny_base(tmp_path, tiny_data_dir, epochs=1))],
        "factors": {"core": {"small": {"set": {"model.init_args.core.init_args.parameters": 40}}}},
    })  # fmt: skip
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        from hqc.ablate.executors import RayExecutor

        assert RayExecutor(None, None, None, 1, 0, 2).env["CUDA_VISIBLE_DEVICES"] == ""
        assert ablate_main(["run", str(path), "--executor", "ray", "--workers", "2"]) == 0
        results = [read_result(run.directory) for run in runs(load_matrix(path))]
        assert [r["seed"] for r in results] == [0, 1]
        assert all(r["status"] == "ok" and r["attempts"] == 1 for r in results)
        assert all(r["parameters"] == results[0]["parameters"] for r in results)
        assert ablate_main(["run", str(path), "--executor", "ray"]) == 0  # resume: nothing new
        assert [read_result(run.directory) for run in runs(load_matrix(path))] == results
    finally:
        ray.shutdown()


def test_dry_run_prints_the_run_table_and_runs_nothing(
    tmp_path, tiny_data_dir, capsys, monkeypatch
):
    import hqc.ablate.runner as runner

    resolved = []
    monkeypatch.setattr(runner, "resolved_config", lambda m, run: resolved.append(run.id))
    path = write(tmp_path / "m.yaml", {
        "base": [str(ROOT / "configs/classical.yaml"), str(tiny_base(tmp_path, tiny_data_dir))],
        "seeds": [3, 4], "root": str(tmp_path / "runs"),
        "factors": {"core": {"a": {}, "b": {"set": {"model.init_args.core.init_args.parameters":
                                                    40}}}},
    })  # fmt: skip
    assert ablate_main(["run", str(path), "--dry-run"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 2 + 4
    assert "| 4 | b | 4 | new |" in table[-1]
    assert not (tmp_path / "runs").exists()
    assert resolved == ["core-a/seed3", "core-b/seed3"]  # once per cell, not per seed


def test_seeds_option_runs_a_pass_of_the_matrix_and_rejects_other_seeds(
    tmp_path, tiny_data_dir, capsys
):
    path = write(tmp_path / "m.yaml", {
        "base": [str(ROOT / "configs/classical.yaml"), str(tiny_base(tmp_path, tiny_data_dir))],
        "seeds": [0, 1, 2, 3, 5], "root": str(tmp_path / "runs"),
        "factors": {"core": {"a": {}, "b": {"set": {"model.init_args.core.init_args.parameters":
                                                    40}}}},
    })  # fmt: skip
    assert ablate_main(["run", str(path), "--dry-run", "--seeds", "1-2,5"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [(r.split("|")[2].strip(), r.split("|")[3].strip()) for r in rows] == [
        ("a", "1"), ("a", "2"), ("a", "5"), ("b", "1"), ("b", "2"), ("b", "5")
    ]  # fmt: skip
    for bad, named in (("4", "[4] not among"), ("1-x", "expected seeds like")):
        with pytest.raises(SystemExit) as exit_info:
            run_guarded(
                lambda bad=bad: ablate_main(["run", str(path), "--dry-run", "--seeds", bad])
            )
        assert exit_info.value.code == 2 and named in capsys.readouterr().err
