"""End to end through ``main([...])``: every shipped config, checkpoints, resume, predict, W&B."""

import csv
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback, Trainer

from hqc.classifier import Classifier
from hqc.main import main

ROOT = Path(__file__).parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HQC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))


def tiny_args(config, data_dir, root, *extra):
    return [
        "--config", str(config),
        "--data.init_args.source", str(data_dir),
        "--data.init_args.per_class", "4",
        "--data.init_args.batch_size", "4",
        "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false",
        *extra,
    ]  # fmt: skip


def test_configs_are_shipped():
    names = {c.stem for c in CONFIGS}
    assert {"classical", "hybrid", "hybrid_qiskit", "projection"} <= names


@pytest.mark.parametrize(
    "config", [c for c in CONFIGS if c.stem != "hybrid_qiskit"], ids=lambda c: c.stem
)
def test_every_config_runs(config, tiny_data_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="lightning.pytorch")  # other tests may quieten it
    cli = main(["fit", *tiny_args(config, tiny_data_dir, tmp_path), "--trainer.fast_dev_run", "1"])
    assert cli.trainer.state.finished
    assert "Trainable parameters per stage" in caplog.text
    assert "test/acc" in cli.trainer.callback_metrics  # fit ends with a test pass


def test_qiskit_config_first_batch_loss_equals_torch_backend(tiny_data_dir, tmp_path, monkeypatch):
    """hybrid_qiskit.yaml runs through TorchConnector and starts exactly where hybrid.yaml does."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    losses = {}
    for name in ("hybrid", "hybrid_qiskit"):
        args = tiny_args(ROOT / f"configs/{name}.yaml", tiny_data_dir, tmp_path / name)
        cli = main(["fit", *args, "--data.init_args.batch_size", "2", "--trainer.fast_dev_run", "1",
                    "--trainer.callbacks+=user_components.RecordLoss"])  # fmt: skip
        assert cli.trainer.state.finished and "test/acc" in cli.trainer.callback_metrics
        (recorder,) = [c for c in cli.trainer.callbacks if hasattr(c, "losses")]
        losses[name] = recorder.losses
    from qiskit_machine_learning.connectors import TorchConnector

    assert isinstance(cli.model.core.layer.net, TorchConnector)
    assert len(losses["hybrid_qiskit"]) == 1
    assert losses["hybrid_qiskit"][0] == pytest.approx(losses["hybrid"][0], abs=1e-5)


def test_parameter_matched_classical_head(tiny_data_dir):
    classical = yaml.safe_load((ROOT / "configs/classical.yaml").read_text())
    args = tiny_args(ROOT / "configs/hybrid.yaml", tiny_data_dir, "runs")
    model = main(args, run=False).model
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert classical["model"]["init_args"]["core"]["init_args"]["parameters"] == total


def test_checkpoint_reload_gives_identical_predictions(tiny_data_dir, tmp_path):
    config = ROOT / "configs/hybrid.yaml"
    cli = main(["fit", *tiny_args(config, tiny_data_dir, tmp_path), "--trainer.max_epochs", "2"])
    texts = cli.datamodule.test_data.texts
    cli.model.eval()
    with torch.no_grad():
        expected = cli.model(texts)
    best = cli.trainer.checkpoint_callback.best_model_path  # fit ends by testing these weights
    reloaded = Classifier.load_from_checkpoint(best).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(texts), expected, rtol=0, atol=0)
    assert type(reloaded.core).__name__ == "ReuploadPQC"


def test_killed_fit_resumes_from_last_checkpoint(tiny_data_dir, tmp_path):
    """SIGKILL a real ``python -m hqc fit`` in epoch 2; resuming ends where an unbroken run ends."""
    config = ROOT / "configs/classical.yaml"
    marker = tmp_path / "stalled"
    args = tiny_args(config, tiny_data_dir, tmp_path / "killed", "--trainer.max_epochs", "3")
    stall = ["--trainer.callbacks+=user_components.StallAt",
             "--trainer.callbacks.epoch=2", f"--trainer.callbacks.marker={marker}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    proc = subprocess.Popen([sys.executable, "-m", "hqc", "fit", *args, *stall], env=env)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run never reached epoch 2"
            time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    last = tmp_path / "killed/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 1

    resumed = main(["fit", *args, "--ckpt_path", "last"])
    assert resumed.trainer.current_epoch == 3
    unbroken = main(["fit", *tiny_args(config, tiny_data_dir, tmp_path / "unbroken",
                                       "--trainer.max_epochs", "3")])  # fmt: skip
    for a, b in zip(resumed.model.parameters(), unbroken.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_predict_writes_labels_and_probabilities(tiny_data_dir, tmp_path):
    config = ROOT / "configs/classical.yaml"
    main(["fit", *tiny_args(config, tiny_data_dir, tmp_path), "--trainer.max_epochs", "1"])
    sentences = tmp_path / "new.txt"
    sentences.write_text("what a lovely film\na boring waste of time\nfine\n")
    out = tmp_path / "predictions.csv"
    main([
        "predict", *tiny_args(config, tiny_data_dir, tmp_path),
        "--ckpt_path", str(tmp_path / "checkpoints/last.ckpt"),
        "--data.init_args.predict_file", str(sentences), "--prediction.output", str(out),
    ])  # fmt: skip
    rows = list(csv.DictReader(out.open()))
    assert [r["text"] for r in rows] == sentences.read_text().splitlines()
    for r in rows:
        probs = [float(r["prob_0"]), float(r["prob_1"])]
        assert sum(probs) == pytest.approx(1, abs=1e-5)
        assert int(r["label"]) == probs.index(max(probs))


def test_any_number_of_classes_trains_without_a_setting(write_split, tmp_path, monkeypatch):
    """A 3-class folder: num_classes comes from the data; fit, test and predict run end to end."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    topics = ["football match goal", "recipe kitchen oven", "guitar song album"]
    rows = [{"text": f"{topics[i % 3]} {i}", "label": i % 3} for i in range(36)]
    data = tmp_path / "three"
    data.mkdir()
    for split, part in {"train": rows[:24], "validation": rows[24:30], "test": rows[30:]}.items():
        write_split(data / f"{split}.jsonl", part)
    args = tiny_args(ROOT / "configs/hybrid.yaml", data, tmp_path, "--data.init_args.per_class",
                     "8", "--model.init_args.encoder", "user_components.HashEncoder")  # fmt: skip
    fit = main(["fit", *args, "--trainer.max_epochs", "1"])
    assert fit.model.num_classes == 3 and fit.model.readout.linear.out_features == 3
    assert {"test/acc", "test/f1"} <= set(fit.trainer.callback_metrics)
    tested = main(["test", *args, "--ckpt_path", str(tmp_path / "checkpoints/last.ckpt")])
    assert "test/acc" in tested.trainer.callback_metrics
    sentences = tmp_path / "new.txt"
    sentences.write_text("a late goal in the match\nan oven recipe\n")
    out = tmp_path / "predictions.csv"
    last = str(tmp_path / "checkpoints/last.ckpt")
    main(["predict", *args, "--ckpt_path", last, "--data.init_args.predict_file", str(sentences),
          "--prediction.output", str(out)])  # fmt: skip
    predictions = list(csv.DictReader(out.open()))
    assert len(predictions) == 2
    for r in predictions:
        probs = [float(r[f"prob_{k}"]) for k in range(3)]
        assert sum(probs) == pytest.approx(1, abs=1e-5)
        assert int(r["label"]) == probs.index(max(probs))


@pytest.mark.parametrize("subcommand", ["validate", "test"])
def test_validate_and_test_from_a_checkpoint(subcommand, tiny_data_dir, tmp_path):
    config = ROOT / "configs/classical.yaml"
    fit = main(["fit", *tiny_args(config, tiny_data_dir, tmp_path), "--trainer.max_epochs", "2"])
    expected = fit.trainer.callback_metrics["test/acc"]  # fit ends by testing the best weights
    best = fit.trainer.checkpoint_callback.best_model_path
    cli = main([subcommand, *tiny_args(config, tiny_data_dir, tmp_path), "--ckpt_path", best])
    stage = "val" if subcommand == "validate" else "test"
    assert f"{stage}/acc" in cli.trainer.callback_metrics
    if stage == "test":
        assert cli.trainer.callback_metrics["test/acc"] == expected


def test_user_component_by_class_path(tiny_data_dir, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    cli = main([
        "fit", *tiny_args(ROOT / "configs/projection.yaml", tiny_data_dir, tmp_path),
        "--model.init_args.projection", "user_components.SignProjection",
        "--model.init_args.projection.width", "3", "--trainer.fast_dev_run", "1",
    ])  # fmt: skip
    assert cli.model.core.circuit.num_qubits == 3  # the core's width follows the user's stage
    assert not torch.equal(cli.model.projection.gain, torch.ones(3))  # trained by the optimizer


def test_wandb_run_gets_the_resolved_config(tiny_data_dir, tmp_path):
    args = tiny_args(ROOT / "configs/classical.yaml", tiny_data_dir, tmp_path)
    cli = main(["fit", *args, "--config", str(ROOT / "configs/logger/wandb.yaml"),
                "--trainer.logger.init_args.save_dir", str(tmp_path / "wandb"),
                "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1"])  # fmt: skip
    run = cli.trainer.logger.experiment
    try:
        assert os.environ["WANDB_MODE"] == "offline"
        assert run.settings.mode == "offline"
        assert run.config["model"]["class_path"] == "hqc.classifier.Classifier"
        assert run.config["model"]["init_args"]["core"]["init_args"]["parameters"] == 214
        assert run.config["data"]["init_args"]["per_class"] == 4
    finally:
        run.finish()


def test_bad_config_value_names_the_setting(tiny_data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", *tiny_args(ROOT / "configs/classical.yaml", tiny_data_dir, tmp_path),
              "--model.init_args.core.init_args.hidden", "many"])  # fmt: skip
    assert "hidden" in capsys.readouterr().err


def test_fine_tuning_trains_the_transformer_in_training_mode(tiny_data_dir, tmp_path):
    """Dropout on while training (hub models load in eval mode), off while validating."""
    modes: dict[str, set[bool]] = {"train": set(), "val": set()}

    class Modes(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            modes["train"] |= {m.training for m in pl_module.encoder.modules()}

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            modes["val"] |= {m.training for m in pl_module.encoder.modules()}

    cli = main(tiny_args(ROOT / "configs/finetune.yaml", tiny_data_dir, tmp_path), run=False)
    Trainer(fast_dev_run=1, callbacks=[Modes()], logger=False, enable_progress_bar=False).fit(
        cli.model, cli.datamodule
    )
    assert modes == {"train": {True}, "val": {False}}


def test_fine_tuning_tests_a_weights_only_best_checkpoint_and_resumes_from_a_full_last(
    tiny_data_dir, tmp_path
):
    """AdamW's state would triple the tested checkpoint; resuming still needs it in last.ckpt."""
    args = tiny_args(ROOT / "configs/finetune.yaml", tiny_data_dir, tmp_path)
    cli = main(["fit", *args, "--trainer.max_epochs", "1"])
    assert "test/acc" in cli.trainer.callback_metrics
    (best,) = tmp_path.rglob("best-epoch*.ckpt")
    (last,) = tmp_path.rglob("last.ckpt")
    best, last = (torch.load(p, map_location="cpu", weights_only=False) for p in (best, last))
    assert "optimizer_states" not in best and len(last["optimizer_states"]) == 1
    assert best["state_dict"].keys() == last["state_dict"].keys()
    resumed = main(["fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    assert resumed.trainer.current_epoch == 2


def test_trainable_encoder_gets_its_own_learning_rate(tiny_data_dir):
    cli = main(tiny_args(ROOT / "configs/finetune.yaml", tiny_data_dir, "runs"), run=False)
    optimizer = cli.model.configure_optimizers()
    head, encoder = optimizer.param_groups
    assert head["lr"] == 1e-3 and encoder["lr"] == 2e-5
    encoder_params = {id(p) for p in cli.model.encoder.parameters()}
    assert {id(p) for p in encoder["params"]} == encoder_params
    assert not encoder_params & {id(p) for p in head["params"]}
