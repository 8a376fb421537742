"""Issue 8, item 5: each defect found in review, pinned by a test that fails while it remains.

The ``test_file`` protocol and the K-class folder have their tests beside their code
(``test_data.py::test_test_file_is_the_whole_test_split_under_paper``,
``test_cli.py::test_any_number_of_classes_trains_without_a_setting``); the rest live here.
"""

from __future__ import annotations

import ast
import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hqc.main import main
from hqc.quantum.circuits import reupload_circuit, z_observables
from hqc.quantum.execution import Execution
from hqc.quantum.layer import BACKENDS, QuantumLayer
from hqc.quantum.torch_qnn import TorchQNN

ROOT = Path(__file__).parents[1]
#: all-MiniLM-L6-v2's parameter count (the default frozen encoder of every shipped config).
MINILM_PARAMETERS = 22_713_216


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HQC_CACHE_DIR", str(tmp_path / "cache"))


def tiny_fit_args(config: str, data_dir: Path, root: Path, *extra: str) -> list[str]:
    """``fit`` on the tiny folder with the cheap hash encoder (no transformer to load)."""
    return [
        "fit", "--config", str(ROOT / f"configs/{config}.yaml"),
        "--model.init_args.encoder", "user_components.HashEncoder",
        "--data.init_args.source", str(data_dir), "--data.init_args.per_class", "4",
        "--data.init_args.batch_size", "4", "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false", *extra,
    ]  # fmt: skip


def test_train_metrics_reach_metrics_csv(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train/acc`` and ``train/f1`` are logged once per epoch, as README's metrics.csv says."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    main(tiny_fit_args("classical", tiny_data_dir, tmp_path, "--trainer.max_epochs", "2"))
    (path,) = (tmp_path / "csv").glob("version_*/metrics.csv")
    rows = list(csv.DictReader(path.open()))
    for name in ("train/acc", "train/f1"):
        values = [(int(r["epoch"]), float(r[name])) for r in rows if r.get(name)]
        assert [epoch for epoch, _ in values] == [0, 1], name
        assert all(0.0 <= v <= 1.0 for _, v in values)


def test_reduce_lr_on_plateau_is_configurable(
    tiny_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``ReduceLROnPlateau`` trains, watching the metric ``scheduler_monitor`` names."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    cli = main(tiny_fit_args(
        "classical", tiny_data_dir, tmp_path, "--trainer.max_epochs", "2",
        "--model.init_args.scheduler", "torch.optim.lr_scheduler.ReduceLROnPlateau",
        "--model.init_args.scheduler.mode", "max", "--model.init_args.scheduler.patience", "0",
        "--model.init_args.scheduler_monitor", "val/acc",
    ))  # fmt: skip
    (config,) = cli.trainer.lr_scheduler_configs
    assert isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert config.monitor == "val/acc"
    assert config.scheduler.last_epoch == 2  # stepped once per epoch on the monitored value
    (path,) = (tmp_path / "csv").glob("version_*/metrics.csv")
    val_acc = [float(r["val/acc"]) for r in csv.DictReader(path.open()) if r.get("val/acc")]
    assert len(val_acc) == 2 and config.scheduler.best == pytest.approx(max(val_acc))


def test_parameter_table_counts_a_frozen_encoder(tiny_data_dir: Path, tmp_path: Path) -> None:
    """The frozen transformer lives outside the module tree but is listed as frozen."""
    args = ["--config", str(ROOT / "configs/hybrid.yaml"),
            "--data.init_args.source", str(tiny_data_dir), "--data.init_args.per_class", "4",
            "--trainer.default_root_dir", str(tmp_path)]  # fmt: skip
    model = main(args, run=False).model
    rows = {line.split()[0]: line.split()[1:] for line in model.parameter_table().splitlines()}
    assert rows["encoder"] == ["SentenceEncoder", "0", f"{MINILM_PARAMETERS:,}"]
    assert rows["total"] == ["214"]


def test_import_loads_no_aer_or_qiskit_machine_learning() -> None:
    """``import hqc.quantum`` and a torch-backend model leave the Qiskit backends unloaded."""
    code = (
        "import sys, torch\n"
        "import hqc.quantum, hqc.classifier, hqc.main\n"
        "from hqc.quantum.reupload import ReuploadPQC\n"
        "core = ReuploadPQC(backend='torch'); core.build(4, 2); core(torch.rand(2, 4))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('qiskit_aer', 'qiskit_machine_learning')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_batch_of_zero_through_every_backend(backend: str) -> None:
    """An empty batch gives ``(0, n_obs)`` and a zero weight gradient (Aer segfaulted on it)."""
    circuit, inputs, weights = reupload_circuit(3)
    layer = QuantumLayer(circuit, z_observables(3, [0, 1]), inputs, weights, backend)
    x = torch.zeros(0, 3, requires_grad=True)
    out = layer(x)
    assert out.shape == (0, 2) and out.dtype == layer.weight.dtype
    out.sum().backward()
    assert torch.equal(layer.weight.grad, torch.zeros_like(layer.weight))
    assert x.grad.shape == (0, 3)


def _float64_weights(n: int) -> torch.Tensor:
    """Weights that float32 cannot hold exactly."""
    return torch.linspace(-math.pi, math.pi, n, dtype=torch.float64) + 1e-12


def test_initial_weights_stay_float64_after_double() -> None:
    """``.double()`` of an untrained module holds ``initial_weights`` exactly, not rounded."""
    circuit, inputs, weights = reupload_circuit(3)
    exact = _float64_weights(len(weights))
    qnn = TorchQNN(circuit, z_observables(3), inputs, weights, initial_weights=exact)
    assert qnn.weight.dtype == torch.float32  # float32 by default, rounded
    assert torch.equal(qnn.double().weight.detach(), exact)
    layer = QuantumLayer(circuit, z_observables(3), inputs, weights, initial_weights=exact)
    assert torch.equal(layer.double().weight.detach(), exact)
    trained = TorchQNN(circuit, z_observables(3), inputs, weights, initial_weights=exact)
    trained.weight.data += 0.5  # once the weights moved, .double() keeps what they are
    moved = trained.weight.detach().double()
    assert torch.equal(trained.double().weight.detach(), moved)


def test_initial_weights_stay_float64_under_a_float64_default() -> None:
    """Built under ``torch.set_default_dtype(torch.float64)`` (Lightning's 64-true init)."""
    circuit, inputs, weights = reupload_circuit(3)
    exact = _float64_weights(len(weights))
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        qnn = TorchQNN(circuit, z_observables(3), inputs, weights, initial_weights=exact)
    finally:
        torch.set_default_dtype(previous)
    assert qnn.weight.dtype == torch.float64
    assert torch.equal(qnn.weight.detach(), exact)


def test_a_float64_layer_stays_float64_through_noise_and_back() -> None:
    """Switching to noise and back keeps the layer's dtype and its exact weights."""
    circuit, inputs, weights = reupload_circuit(3)
    exact = _float64_weights(len(weights))
    layer = QuantumLayer(circuit, z_observables(3), inputs, weights, initial_weights=exact)
    layer.double()
    layer.set_execution(Execution(noise="ionq_aria"))
    assert layer.weight.dtype == torch.float64 and torch.equal(layer.weight.detach(), exact)
    assert layer(torch.rand(2, 3, dtype=torch.float64)).dtype == torch.float64
    layer.set_execution(Execution())
    assert isinstance(layer.net, TorchQNN)
    assert layer.weight.dtype == torch.float64 and torch.equal(layer.weight.detach(), exact)


BENCH_SCRIPTS = sorted((ROOT / "tools").glob("bench_*.py"))


@pytest.mark.parametrize("script", BENCH_SCRIPTS, ids=lambda p: p.stem)
def test_bench_scripts_hard_code_no_machine(script: Path) -> None:
    """No venv or absolute path, and no literal thread count handed to torch or a child."""
    source = script.read_text()
    assert ".venv" not in source and "/work/" not in source and "/root/" not in source
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name.endswith(("set_num_threads", "set_num_interop_threads", "thread_env")):
                assert not any(isinstance(a, ast.Constant) for a in node.args), ast.unparse(node)
