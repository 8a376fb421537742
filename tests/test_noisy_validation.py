"""NoisyAerValidation: exact agreement without noise, noise moving accuracy, metrics in a fit."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

from hqc.errors import UserError
from hqc.main import main
from hqc.noise import NoisyAerValidation
from hqc.noise.spec import NoiseSpec

ROOT = Path(__file__).parents[1]
# 3 qubits, one re-upload: the smallest hybrid head (a linear projection feeds the PQC).
SMALL = [
    "--model.init_args.projection.init_args.out_features", "3",
    "--model.init_args.core.init_args.reuploads", "1",
    "--model.init_args.core.init_args.layers", "1",
    "--model.init_args.core.init_args.connectivity", "1",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HQC_CACHE_DIR", str(tmp_path / "cache"))


def _args(data_dir: Path, root: Path, *extra: str) -> list[str]:
    return [
        "--config", str(ROOT / "configs/projection.yaml"), *SMALL,
        "--data.init_args.source", str(data_dir),
        "--data.init_args.per_class", "4",
        "--data.init_args.batch_size", "8",
        "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false",
        *extra,
    ]  # fmt: skip


def _metrics(model, loader) -> tuple[torch.Tensor, dict[str, float]]:
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(batch["text"]) for batch in loader])
    labels = torch.cat([batch["label"] for batch in loader])
    acc = float((logits.argmax(1) == labels).float().mean())
    return logits, {"acc": acc, "loss": float(torch.nn.functional.cross_entropy(logits, labels))}


def test_noise_drives_noisy_accuracy_to_chance_and_leaves_the_exact_model_alone(
    tiny_data_dir, tmp_path
):
    extra = ("--data.init_args.per_class", "12", "--trainer.max_epochs", "15",
             "--checkpoint.monitor", "val/loss", "--checkpoint.mode", "min")  # fmt: skip
    cli = main(["fit", *_args(tiny_data_dir, tmp_path, *extra)])
    model, loader = cli.model, cli.datamodule.test_dataloader()  # 16 sentences, 8 per class
    logits, exact = _metrics(model, loader)
    assert exact["acc"] >= 0.75  # trained well above chance, so chance below is the noise's doing

    clean = NoisyAerValidation(NoiseSpec(), shots=None).evaluate(model, [loader])
    assert clean["acc"] == exact["acc"] and clean["loss"] == pytest.approx(exact["loss"], abs=1e-6)

    full = NoiseSpec(gate_error_1q=2 / 3, gate_error_2q=0.8)  # fully depolarising gates
    coin = NoiseSpec(readout_error=0.5)  # every bit a fair coin, whatever the state
    for noise in (full, coin):
        noisy = NoisyAerValidation(noise, shots=None).evaluate(model, [loader])
        assert noisy["acc"] == 0.5  # every Z is 0: one class for every sentence
    # the sampler path: shot estimates of the same two cases land on their exact losses (shot
    # error of Z at 4096 shots is ~0.016, so these bounds hold; a wrong readout model misses them)
    for noise in (NoiseSpec(), coin):
        exact_loss = NoisyAerValidation(noise, shots=None).evaluate(model, [loader])["loss"]
        sampled = NoisyAerValidation(noise, shots=4096).evaluate(model, [loader])["loss"]
        assert sampled == pytest.approx(exact_loss, abs=0.03)

    losses = [
        NoisyAerValidation(NoiseSpec(readout_error=p), shots=None).evaluate(model, [loader])["loss"]
        for p in (0.0, 0.15, 0.3)
    ]
    assert losses[0] < losses[1] < losses[2]  # readout flips shrink the margin the model learnt
    after, again = _metrics(model, loader)
    torch.testing.assert_close(after, logits, rtol=0, atol=0)  # quantum layers restored
    assert again == exact


def test_fit_with_a_noise_preset_logs_exact_and_noisy_metrics(tiny_data_dir, tmp_path):
    preset = tmp_path / "tiny_noise.yaml"
    config = yaml.safe_load((ROOT / "configs/noise/ibm_heron.yaml").read_text())
    config["model"]["init_args"]["execution"]["shots"] = 64
    noisy = config["trainer"]["callbacks+"][0]["init_args"]
    noisy["every_n_epochs"], noisy["test"] = 1, True
    preset.write_text(yaml.safe_dump(config))
    args = _args(tiny_data_dir, tmp_path, "--config", str(preset), "--trainer.max_epochs", "2")
    cli = main(["fit", *args])
    assert cli.model.core.layer.execution.shots == 64
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, NoisyAerValidation)]
    assert callback.noise.gate_error_2q == pytest.approx(3.9e-3)
    rows = list(csv.DictReader((tmp_path / "csv/version_0/metrics.csv").open()))
    val_rows = [r for r in rows if r.get("val_noisy/acc")]
    assert len(val_rows) == 2  # one per epoch, no sanity-check pass
    for row in val_rows:
        assert row["val/acc"] != ""  # exact and noisy side by side
        assert 0 <= float(row["val_noisy/acc"]) <= 1 and float(row["val_noisy/seconds"]) > 0
    assert any(r.get("test_noisy/acc") for r in rows) and any(r.get("test/acc") for r in rows)


def test_callback_settings_are_checked():
    with pytest.raises(UserError, match=r"NoisyAerValidation\.shots"):
        NoisyAerValidation(NoiseSpec(), shots=0)
    with pytest.raises(UserError, match=r"every_n_epochs"):
        NoisyAerValidation(NoiseSpec(), every_n_epochs=0)
    with pytest.raises(UserError, match="no such preset"):
        NoisyAerValidation("ionq_forte_9000")


def test_density_fragment_trains_a_head_under_noise(tiny_data_dir, tmp_path):
    args = _args(
        tiny_data_dir, tmp_path, "--config", str(ROOT / "configs/noise/train_density.yaml")
    )
    args += ["--trainer.default_root_dir", str(tmp_path)]  # the fragment sets runs/train_density
    cli = main(["fit", *args, "--trainer.max_epochs", "1", "--trainer.limit_test_batches", "1"])
    layer = cli.model.core.layer
    assert type(layer.net).__name__ == "DensityQNN" and layer.execution.noise.gate_error_2q > 0
    batch = next(iter(cli.datamodule.train_dataloader()))
    loss = torch.nn.functional.cross_entropy(cli.model.train()(batch["text"]), batch["label"])
    (grad,) = torch.autograd.grad(loss, layer.weight)
    assert grad.abs().sum() > 0  # gradients flow through the noisy simulation
    assert "test_noisy/acc" in cli.trainer.callback_metrics  # after fit, test metrics remain


class _Lookup(torch.nn.Module):
    """A stand-in sentence encoder: text ``"i"`` -> row i of a fixed random table (width 4)."""

    out_features = 4
    trainable = False

    def __init__(self) -> None:
        super().__init__()
        self.table = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))

    def warm(self, texts, device="cpu") -> None:
        """Nothing to prepare."""

    def held_out_parameters(self):
        return iter(())

    def forward(self, texts):
        return self.table[[int(t) for t in texts]]


def _sqe_model():
    """2-qubit sQE (amplitude-encoded) -> 2-qubit re-upload core: both stages quantum."""
    from hqc.classifier import Classifier
    from hqc.quantum.reupload import ReuploadPQC
    from hqc.quantum.sqe import SimulatedQuantumEncoders
    from hqc.readout import LinearReadout

    torch.manual_seed(0)
    sqe = SimulatedQuantumEncoders(encoders=1, layers=1, connectivity=1, measured=2)
    core = ReuploadPQC(reuploads=1, layers=1, connectivity=1)
    model = Classifier(_Lookup(), core, projection=sqe, readout=LinearReadout()).eval()
    loader = [{"text": [str(i) for i in range(16)], "label": torch.arange(16) % 2}]
    return model, loader


def test_sqe_layers_stay_classical_unless_asked():
    """The paper runs its sQEs classically: by default only the core goes to noisy Aer; with
    ``classical_encoders=False`` the amplitude loader runs there too, with the same values."""
    model, loader = _sqe_model()
    _, exact = _metrics(model, loader)
    names = {}
    for classical in (True, False):
        callback = NoisyAerValidation(NoiseSpec(), shots=None, classical_encoders=classical)
        names[classical] = [name for name, _ in callback.noisy_layers(model)]
        clean = callback.evaluate(model, [loader])  # the amplitude loader on Aer too if False
        assert clean["acc"] == exact["acc"] and clean["loss"] == pytest.approx(exact["loss"])
        assert sorted(callback._programs) == sorted(names[classical])  # what ran on Aer
    assert names[True] == ["core.layer"]
    assert names[False] == ["projection.encoder_layers.0", "core.layer"]


def test_a_model_whose_only_quantum_layers_are_sqes_is_refused_by_default():
    from hqc.classifier import Classifier
    from hqc.mlp import MLP
    from hqc.quantum.sqe import SimulatedQuantumEncoders

    sqe = SimulatedQuantumEncoders(encoders=1, layers=1, connectivity=1, measured=2)
    model = Classifier(_Lookup(), MLP(hidden=0), projection=sqe)
    with pytest.raises(UserError, match="classical_encoders: false"):
        NoisyAerValidation(NoiseSpec(), shots=None).evaluate(model, [])
    assert len(NoisyAerValidation(NoiseSpec(), classical_encoders=False).noisy_layers(model)) == 1


def test_fake_backend_callback_runs_on_the_devices_qubits():
    """fake:FakeManilaV2 (a real calibration, 5 qubits): a 3-qubit layer is laid out on the
    device, measured through its layout, and its Z values come back shrunk by the noise."""
    import numpy as np
    import qiskit_ibm_runtime  # noqa: F401  (in the test extra: this must run, never skip)

    from hqc.quantum.circuits import reupload_circuit, z_observables
    from hqc.quantum.layer import QuantumLayer

    circuit, inputs, weights = reupload_circuit(3, reuploads=1, layers=1, connectivity=1)
    torch.manual_seed(0)
    layer = QuantumLayer(circuit, z_observables(3, [0, 2]), inputs, weights).double()
    x = torch.rand(12, 3, dtype=torch.float64) * 2 * torch.pi
    with torch.no_grad():
        exact = layer(x).numpy()
    callback = NoisyAerValidation("fake:FakeManilaV2", shots=8192, seed=1)
    program = callback.compile("layer", layer)
    assert program.circuit.num_qubits == 5
    assert set(program.circuit.count_ops()) <= {"rz", "sx", "x", "cx", "measure", "barrier"}
    noisy = callback.run(program, circuit, layer.observables, x.numpy())
    # Manila's cx (~1e-2) and readout (~3e-2) errors shrink each |Z| by ~10-15 % (<= 0.14 at
    # |Z| <= 0.9) and 8192 shots add <= 5 * 0.011; the other observable's values (a wrong bit
    # order or layout) are > 0.5 away here.
    assert np.abs(noisy - exact).max() < 0.2
    assert np.abs(noisy - exact[:, ::-1]).max() > 0.5
    assert np.abs(noisy).mean() < np.abs(exact).mean()  # noise shrinks, never sharpens
