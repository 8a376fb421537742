"""hqc.export: export → reload, transpiled operators, gate-count formula, backend runs, errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from qiskit.quantum_info import Operator
from qiskit.transpiler import CouplingMap

from hqc.errors import UserError
from hqc.export.backend_run import SamplerEvaluator, evaluate_test_split
from hqc.export.export import export_model, load_checkpoint, load_export
from hqc.export.resources import transpile_for
from hqc.export.targets import (
    DeviceTarget,
    all_to_all_target,
    check_fits,
    generic_superconducting,
    resolve_target,
)
from hqc.main import main
from hqc.quantum.circuits import reupload_circuit

ROOT = Path(__file__).parents[1]
#: The 7-qubit "H" of IBM's Falcon devices: a heavy-hex fragment small enough for Operator.
H_SHAPE = CouplingMap(
    [e for a, b in [(0, 1), (1, 2), (1, 3), (3, 5), (4, 5), (5, 6)] for e in ((a, b), (b, a))]
)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HQC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))


def config_args(config, data_dir, *extra):
    return [
        "--config", str(ROOT / "configs" / config),
        "--data.init_args.source", str(data_dir),
        "--data.init_args.per_class", "4",
        "--data.init_args.batch_size", "8",
        *extra,
    ]  # fmt: skip


def checkpoint(args, path):
    """A checkpoint of the config's freshly initialised (seeded) model, as fit writes one."""
    cli = main(args, run=False)
    torch.save({"state_dict": cli.model.state_dict()}, path)
    return path


def test_export_reloads_to_identical_predictions(tiny_data_dir, tmp_path):
    """QPY and OpenQASM 3 reloads of the hybrid head (amplitude-encoded SQE + re-upload core)."""
    args = config_args("hybrid.yaml", tiny_data_dir)
    model, cli = load_checkpoint(args, checkpoint(args, tmp_path / "h.ckpt"))
    manifest = export_model(model, cli, tmp_path / "export")
    assert [s["module"] for s in manifest["quantum_stages"]] == [
        "projection.encoder_layers.0",
        "projection.encoder_layers.1",
        "core.layer",
    ]
    texts = cli.datamodule.test_data.texts[:6]
    with torch.no_grad():
        expected = model(texts)
    for source in ("qpy", "qasm3"):
        reloaded = load_export(tmp_path / "export", source)
        with torch.no_grad():
            got = reloaded(texts)
        torch.testing.assert_close(got, expected, rtol=0, atol=2e-5)
        assert torch.equal(got.argmax(-1), expected.argmax(-1))


def paper_circuit(q, reuploads=2, layers=2, connectivity=2, seed=0):
    circuit, _, _ = reupload_circuit(q, reuploads, layers, connectivity)
    return circuit.assign_parameters(
        np.random.default_rng(seed).uniform(-3, 3, circuit.num_parameters)
    )


@pytest.mark.parametrize("q", [3, 6])
@pytest.mark.parametrize("device", ["all_to_all", "heavy_hex_H7"])
def test_transpiled_circuit_equals_original_operator(q, device):
    """Up to global phase; Operator.from_circuit undoes the initial and final (routing) layout."""
    if device == "all_to_all":
        target = DeviceTarget(device, all_to_all_target(q))
    else:
        backend = generic_superconducting(H_SHAPE)
        target = DeviceTarget(device, backend.target, backend)
    circuit = paper_circuit(q)
    isa, swaps = transpile_for(circuit, target)
    assert (swaps > 0) == (device != "all_to_all")  # long-range CX need routing on heavy-hex
    op = Operator.from_circuit(isa)
    ancillas = op.num_qubits - q
    expected = Operator(np.eye(2**ancillas)).tensor(Operator(circuit))
    assert op.equiv(expected)
    assert not op.equiv(Operator(np.eye(2**ancillas)).tensor(Operator(paper_circuit(q, seed=1))))


@pytest.mark.parametrize(
    "q, n, m, c", [(2, 1, 1, 1), (4, 2, 2, 2), (5, 1, 2, 2), (6, 2, 1, 3), (8, 2, 2, 2)]
)
def test_all_to_all_gate_counts_match_formula(q, n, m, c):
    """The paper circuit (N re-uploads, M layers, connectivity C, Q qubits, all values bound).

    It has one CX per (block, layer, offset, qubit): (N+1)·M·Q·C, each becoming one RXX on the
    all-to-all target with no SWAP. Every maximal single-qubit run (one per qubit before its
    first 2-qubit gate, and one per qubit after every 2-qubit gate: Q + 2·(N+1)·M·Q·C runs) is
    synthesised as an Euler Z·X·Z rotation with exactly one RX; its RZs merge with their
    neighbours' or vanish, so only their bound (≤ 2 per run) is asserted.
    """
    two_q = (n + 1) * m * q * c
    isa, swaps = transpile_for(paper_circuit(q, n, m, c), DeviceTarget("a", all_to_all_target(q)))
    counts = isa.count_ops()
    assert swaps == 0
    assert set(counts) == {"rz", "rx", "rxx"}
    assert counts["rxx"] == two_q
    assert counts["rx"] == q + 2 * two_q
    assert counts["rz"] <= 2 * (q + 2 * two_q)


def projection_args(data_dir):
    return config_args(
        "projection.yaml", data_dir, "--model.init_args.projection.init_args.out_features", "3"
    )


def test_fake_backend_run_is_cached_and_matches_aer_from_backend(tiny_data_dir, tmp_path):
    """A 3-qubit head on FakeJakartaV2 (real calibration) through BackendSamplerV2.

    A second run submits no PUB (every batch is cached) and gives the same metrics; the same
    evaluator on AerSimulator.from_backend(FakeJakartaV2) (the same calibrated noise model, fresh
    shots) gives expectations within shot noise.
    """
    from qiskit_aer import AerSimulator

    args = projection_args(tiny_data_dir)
    ckpt = checkpoint(args, tmp_path / "p.ckpt")
    device = resolve_target("fake:FakeJakartaV2")
    runs = []
    for _ in range(2):
        model, cli = load_checkpoint(args, ckpt)
        evaluate = SamplerEvaluator(device.backend, 2000, tmp_path / "cache", seed=0)
        runs.append((evaluate_test_split(model, cli.datamodule, evaluate), evaluate.pubs_run))
    (first, pubs), (second, pubs_again) = runs
    assert pubs == 4 and pubs_again == 0  # 32 test sentences in batches of 8, one stage
    assert first == second

    model, cli = load_checkpoint(args, ckpt)
    layer = model.core.layer
    x = torch.rand(16, 3) * np.pi
    with torch.no_grad():
        exact = layer(x).double().numpy()
    values = []
    for backend, seed in ((device.backend, 1), (AerSimulator.from_backend(device.backend), 2)):
        evaluate = SamplerEvaluator(backend, 4000, None, seed=seed)
        from hqc.export.circuit_layer import ordered_inputs

        values.append(evaluate(ordered_inputs(layer), layer.observables, x.double().numpy()))
    fake, aer = values
    assert np.abs(fake - aer).max() < 5 * np.sqrt(2 / 4000)  # two independent 4000-shot means
    assert np.abs(fake - exact).max() > 0.01  # the calibrated noise is really there


def test_checkpoint_without_quantum_stages(tiny_data_dir, tmp_path):
    args = config_args("classical.yaml", tiny_data_dir)
    model, cli = load_checkpoint(args, checkpoint(args, tmp_path / "c.ckpt"))
    with pytest.raises(UserError, match="no quantum stage"):
        export_model(model, cli, tmp_path / "export")


def test_unknown_target_and_too_wide_circuit():
    with pytest.raises(UserError, match="unknown target 'ion_trap'"):
        resolve_target("ion_trap")
    with pytest.raises(UserError, match="does not import"):
        resolve_target("qiskit.nowhere.Backend")
    with pytest.raises(UserError, match="a 26-qubit circuit does not fit target 'all_to_all'"):
        check_fits(26, resolve_target("all_to_all"))
    with pytest.raises(UserError, match="does not fit target 'a'"):
        transpile_for(paper_circuit(4), DeviceTarget("a", all_to_all_target(3)))


def test_cli_user_errors_exit_2(tiny_data_dir, tmp_path):
    """``python -m hqc.export``: a missing checkpoint, a classical one, an unknown target."""
    args = config_args("classical.yaml", tiny_data_dir)
    ckpt = checkpoint(args, tmp_path / "c.ckpt")
    cases = {
        "is not a file": ["export", *args, "--ckpt_path", str(tmp_path / "none.ckpt")],
        "no quantum stage": ["export", *args, "--ckpt_path", str(ckpt)],
        "unknown target 'nope'": ["run", *args, "--ckpt_path", str(ckpt), "--backend", "nope"],
    }
    for message, argv in cases.items():
        argv += ["--out", str(tmp_path / "out")]
        done = subprocess.run(
            [sys.executable, "-m", "hqc.export", *argv], capture_output=True, text=True, cwd=ROOT
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr.splitlines()[-1]
