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
    AdaptiveThreads,
    ThreadTuner,
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


class _Machine:
    """A fake clock whose step time depends on torch's thread count and on a busy neighbour."""

    def __init__(self):
        self.now, self.busy = 0.0, False

    def clock(self):
        return self.now

    def step(self, tuner):
        tuner.start()
        threads = torch.get_num_threads()
        # quiet: 2 threads 239 ms, 1 thread 318 ms; busy neighbour: 2 threads 690 ms, 1 316 ms
        # (BENCHMARKS.md contention table, Q = 14, batch 64)
        self.now += {(1, False): 0.318, (2, False): 0.239, (1, True): 0.316, (2, True): 0.690}[
            (threads, self.busy)
        ]
        tuner.stop()
        return threads


def test_tuner_keeps_the_faster_count_and_follows_a_neighbour_that_comes_and_goes():
    machine = _Machine()
    tuner = ThreadTuner([1, 2], probe=3, every=50, warmup=2, clock=machine.clock)
    torch.set_num_threads(1)
    used = [machine.step(tuner) for _ in range(60)]
    assert used[:2] == [1, 1] and used[2:6] == [1] * 4 and used[6:10] == [2] * 4  # probe
    assert used[10:60] == [2] * 50 and tuner.probes == 1  # quiet: two threads win
    machine.busy = True
    used = [machine.step(tuner) for _ in range(58)]
    assert tuner.probes == 2 and used[8:] == [1] * 50  # next probe: the neighbour costs 2
    machine.busy = False
    used = [machine.step(tuner) for _ in range(58)]
    assert tuner.probes == 3 and used[8:] == [2] * 50
    # beside the neighbour, the tuned run's mean step is within 1.5x of the quiet best
    machine.busy, start = True, machine.now
    for _ in range(580):
        machine.step(tuner)
    assert (machine.now - start) / 580 / 0.239 < 1.5


def test_tuner_settings_are_checked():
    for bad in ({"choices": []}, {"choices": [0, 2]}, {"choices": [1], "probe": 0}):
        with pytest.raises(ValueError, match="ThreadTuner"):
            ThreadTuner(**{"choices": [1, 2], **bad})


def test_auto_adds_the_tuner_only_where_it_picks_more_than_one_thread(monkeypatch, tiny_data_dir):
    config = ["--config", str(ROOT / "configs/hybrid.yaml"), "--data.init_args.source",
              str(tiny_data_dir), "--data.init_args.per_class", "4"]  # fmt: skip

    def tuners(cli):
        return [c for c in cli.trainer.callbacks if isinstance(c, AdaptiveThreads)]

    monkeypatch.setattr("hqc.threads.available_cores", lambda: 4)
    assert tuners(main(config, run=False)) == []  # 9 qubits: one thread, fixed
    connector = [*config, "--model.init_args.core.init_args.backend", "torchconnector"]
    (tuner,) = tuners(main(connector, run=False))  # the share (4), re-timed against 1
    assert tuner.tuner.choices == [4, 1] and torch.get_num_threads() == 4
    assert tuners(main([*connector, "--threads", "2"], run=False)) == []  # a number is fixed
    monkeypatch.setenv(CONCURRENT_RUNS_ENV, "4")
    assert tuners(main(connector, run=False)) == []  # a share of one core: nothing to choose


def test_adaptive_threads_run_inside_a_lightning_fit(tmp_path):
    from lightning.pytorch import Trainer
    from lightning.pytorch.demos.boring_classes import BoringModel

    callback = AdaptiveThreads([1, 2], probe=1, every=4)
    trainer = Trainer(max_steps=20, callbacks=[callback], logger=False,
                      enable_checkpointing=False, enable_progress_bar=False,
                      default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(BoringModel())
    assert callback.tuner.probes == 2  # warmup 3, probe 4 steps, 4 between: at 7 and 15
    assert torch.get_num_threads() == callback.tuner.threads in (1, 2)
