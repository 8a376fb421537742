"""User errors through the real command line: one line on stderr, exit status 2, no traceback.

The guard lives in the entry point, so an in-process ``main()`` cannot show it: every case runs
``hqc/__main__.py`` in a process of its own, with ``user_components.HashEncoder`` standing in
for the sentence transformer. Start-up (Lightning's imports) would dominate, so the bad-input
cases are forked from one interpreter that imported hqc once (``tests/cli_forks.py``); the
``HQC_DEBUG`` and console-script cases start fresh interpreters, as a user's shell does.
"""

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hqc.errors import USER_ERROR_EXIT

ROOT = Path(__file__).parents[1]
TESTS = Path(__file__).parent


def fit_args(config: str, data_dir: Path | str, tmp: Path, *extra: str) -> list[str]:
    """``fit`` arguments for ``configs/<config>.yaml`` on ``data_dir`` with the cheap encoder."""
    return [
        "fit", "--config", str(ROOT / f"configs/{config}.yaml"),
        "--model.init_args.encoder", "user_components.HashEncoder",
        "--data.init_args.source", str(data_dir), "--data.init_args.per_class", "4",
        "--trainer.default_root_dir", str(tmp / "run"),
        "--trainer.enable_progress_bar", "false", "--trainer.fast_dev_run", "1", *extra,
    ]  # fmt: skip


def run_env(tmp: Path) -> dict[str, str]:
    """A run's own cache and W&B folders, the test folder importable, HQC_DEBUG unset."""
    env = {**os.environ, "PYTHONPATH": str(TESTS), "HQC_CACHE_DIR": str(tmp / "cache"),
           "WANDB_DIR": str(tmp), "WANDB_MODE": "offline"}  # fmt: skip
    env.pop("HQC_DEBUG", None)
    return env


def assert_user_error(result: subprocess.CompletedProcess, *message: str) -> None:
    """Exit 2, every part of ``message`` on stderr, and no traceback anywhere."""
    assert result.returncode == USER_ERROR_EXIT, result.stderr[-3000:]
    for part in message:
        assert part in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout


def break_folder(root: Path, edits: dict[str, str | None]) -> None:
    """``{"file:n": line}`` replaces line n, ``{"file": text}`` writes it, ``None`` deletes it."""
    for target, text in edits.items():
        name, _, number = target.partition(":")
        path = root / name
        if number:
            lines = path.read_text().splitlines()
            lines[int(number) - 1] = text or ""
            path.write_text("\n".join(lines) + "\n")
        elif text is None:
            path.unlink()
        else:
            path.write_text(text)


# case: (edits to the tiny folder, extra CLI args ("{root}" is the folder), message parts)
DATA_CASES: dict[str, tuple[dict[str, str | None], list[str], list[str]]] = {
    "missing_folder": (
        {},
        ["--data.init_args.source", "{root}/nowhere"],
        ["data directory", "nowhere not found"],
    ),
    "missing_split": (
        {"test.jsonl": None},
        ["--data.init_args.protocol", "given"],
        ["test.jsonl (or .csv) not found"],
    ),
    "malformed_json": (
        {"train.jsonl:3": '{"text": "a film",'},
        [],
        ["train.jsonl, line 3: malformed JSON"],
    ),
    "missing_label": (
        {"validation.jsonl:2": '{"text": "a film"}'},
        [],
        ["validation.jsonl, line 2: missing 'label'"],
    ),
    "label_outside_classes": (
        {"test.jsonl:4": '{"text": "a film", "label": 7}'},
        [],
        ["test.jsonl, line 4: label 7 is not in the class set [0, 1]"],
    ),
    "empty_split": ({"validation.jsonl": ""}, [], ["validation.jsonl: empty split"]),
    "per_class_too_large": (
        {},
        ["--data.init_args.per_class", "50"],
        ["per_class=50 but class 0 has only 20 sentences"],
    ),
    "csv_without_label_column": (
        {"train.jsonl": None, "train.csv": "text,sentiment\na fine film,1\n"},
        [],
        ["train.csv, line 1: header", "'label'"],
    ),
}


SETTING_CASES: dict[str, tuple[str, list[str], list[str]]] = {
    "unknown_class_path": (
        "classical", ["--model.init_args.core", "hqc.nowhere.Core"], ["hqc.nowhere.Core"]
    ),
    "bad_value": (
        "classical", ["--data.init_args.per_class", "0"], ["per_class must be at least 1"]
    ),
    "missing_checkpoint": (
        "classical", ["--ckpt_path", "gone.ckpt"], ["ckpt_path=gone.ckpt: no such checkpoint file"]
    ),
    "qubit_outside_circuit": (
        "hybrid",
        ["--model.init_args.core.init_args.measured_qubits", "[9]"],
        ["measured qubits [9] do not exist on 8 qubits"],
    ),
}  # fmt: skip


def console_script() -> list[str]:
    """The ``hqc`` script pyproject.toml declares, as a command (what pip installs runs it)."""
    text = (ROOT / "pyproject.toml").read_text()
    module, function = re.search(r'^hqc = "([\w.]+):(\w+)"$', text, re.M).groups()
    code = (
        f"import sys; from {module} import {function}; sys.argv[0] = 'hqc'; sys.exit({function}())"
    )
    return [sys.executable, "-c", code]


def run_forked(runs: dict[str, tuple[list[str], Path]]) -> dict[str, subprocess.CompletedProcess]:
    """``{case: (argv, tmp)}`` through ``tests/cli_forks.py``: one fork per case, in order."""
    specs = [
        {"argv": argv, "env": run_env(tmp), "unset": ["HQC_DEBUG"],
         "out": str(tmp / "stdout"), "err": str(tmp / "stderr")}
        for argv, tmp in runs.values()
    ]  # fmt: skip
    server = subprocess.run(
        [sys.executable, str(TESTS / "cli_forks.py")], input=json.dumps(specs),
        env=run_env(TESTS), capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    statuses = json.loads(server.stdout.splitlines()[-1])
    return {
        case: subprocess.CompletedProcess(
            argv, status, (tmp / "stdout").read_text(), (tmp / "stderr").read_text()
        )
        for (case, (argv, tmp)), status in zip(runs.items(), statuses, strict=True)
    }


@pytest.fixture(scope="module")
def results(make_tiny_dir, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Every case's run by name: the bad inputs forked, the last two in fresh interpreters."""
    forked = {}
    for case, (edits, extra, _) in DATA_CASES.items():
        tmp = tmp_path_factory.mktemp(case)
        root = make_tiny_dir(tmp / "data")
        break_folder(root, edits)
        forked[case] = (
            fit_args("classical", root, tmp, *(a.format(root=root) for a in extra)),
            tmp,
        )
    for case, (config, extra, _) in SETTING_CASES.items():
        tmp = tmp_path_factory.mktemp(case)
        forked[case] = (fit_args(config, make_tiny_dir(tmp / "data"), tmp, *extra), tmp)
    debug = tmp_path_factory.mktemp("debug")
    break_folder(make_tiny_dir(debug / "data"), {"train.jsonl:3": "{"})
    script = tmp_path_factory.mktemp("script")
    fresh = {
        "debug": ([sys.executable, "-m", "hqc", *fit_args("classical", debug / "data", debug)],
                  {**run_env(debug), "HQC_DEBUG": "1"}),
        "console_script": ([*console_script(), *fit_args("classical", script / "nowhere", script)],
                           run_env(script)),
    }  # fmt: skip
    with ThreadPoolExecutor(3) as pool:
        forks = pool.submit(run_forked, forked)
        jobs = {
            name: pool.submit(
                subprocess.run, cmd, env=env, capture_output=True, text=True, timeout=300
            )
            for name, (cmd, env) in fresh.items()
        }
        return {**forks.result(), **{name: job.result() for name, job in jobs.items()}}


@pytest.mark.parametrize("case", DATA_CASES, ids=str)
def test_bad_data_is_one_line_exit_2(case, results):
    assert_user_error(results[case], *DATA_CASES[case][2])


@pytest.mark.parametrize("case", SETTING_CASES, ids=str)
def test_bad_setting_is_one_line_exit_2(case, results):
    assert_user_error(results[case], *SETTING_CASES[case][2])


def test_hqc_debug_shows_the_traceback(results):
    result = results["debug"]
    assert result.returncode not in (0, USER_ERROR_EXIT)
    assert "Traceback" in result.stderr
    assert "hqc.errors.UserError" in result.stderr and "train.jsonl, line 3" in result.stderr


def test_console_script_is_guarded(results):
    """The ``hqc`` script runs through the same guard as ``python -m hqc``."""
    assert_user_error(results["console_script"], "nowhere not found")
