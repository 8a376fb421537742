"""The ``threads`` setting: the automatic choice, its inputs, and the CLI flag."""

import os
from pathlib import Path

import pytest
import torch

from hqc.errors import UserError
from hqc.main import main
from hqc.threads import (
    CONCURRENT_RUNS_ENV,
    SERIAL_BELOW_QUBITS,
    available_cores,
    choose_threads,
    concurrent_runs,
    model_qubits,
    parse_threads,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_small_circuits_run_serial_large_ones_on_the_share():
    assert choose_threads(SERIAL_BELOW_QUBITS - 1, cores=16, runs=1) == 1
    assert choose_threads(SERIAL_BELOW_QUBITS, cores=16, runs=1) == 16
    assert choose_threads(20, cores=16, runs=3) == 5
    assert choose_threads(20, cores=2, runs=4) == 1  # never below one thread
    assert choose_threads(SERIAL_BELOW_QUBITS - 1, cores=16, runs=2, parallel=True) == 8


def test_concurrent_runs_from_the_environment(monkeypatch):
    monkeypatch.setenv(CONCURRENT_RUNS_ENV, "3")
    assert concurrent_runs() == 3
    assert choose_threads(20, cores=12) == 4
    for bad in ("0", "two"):
        monkeypatch.setenv(CONCURRENT_RUNS_ENV, bad)
        with pytest.raises(UserError, match=CONCURRENT_RUNS_ENV):
            concurrent_runs()


def test_available_cores_follow_the_affinity_mask():
    assert available_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("bad", ["0", "-2", "many", "1.5"])
def test_bad_threads_setting_is_a_user_error(bad):
    with pytest.raises(UserError, match="threads"):
        parse_threads(bad)


def test_cli_threads_flag_sets_torch_threads(monkeypatch, tiny_data_dir):
    config = ["--config", str(ROOT / "configs/hybrid.yaml"), "--data.init_args.source",
              str(tiny_data_dir), "--data.init_args.per_class", "4"]  # fmt: skip
    torch.set_num_threads(2)
    cli = main([*config, "--threads", "1"], run=False)
    assert torch.get_num_threads() == 1
    assert model_qubits(cli.model) == 9  # two 9-qubit sQEs and an 8-qubit core
    torch.set_num_threads(2)
    main(config, run=False)  # auto: 9 qubits < 12 -> one thread
    assert torch.get_num_threads() == 1
    torch.set_num_threads(1)  # auto, core on the torchconnector backend: the share
    main([*config, "--model.init_args.core.init_args.backend", "torchconnector"], run=False)
    assert torch.get_num_threads() == choose_threads(0, parallel=True)
