"""hqc.export: export → reload, transpiled operators, gate-count formula, backend runs, errors."""

import json
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


@pytest.mark.parametrize("q, n, m, c", [(3, 1, 1, 2), (4, 2, 2, 2), (6, 2, 1, 3)])
def test_ionq_native_target(q, n, m, c):
    """GPI/GPI2/MS via qiskit-ionq (``hardware`` extra; the RZ/RX/RXX fallback is tested above
    and below): one MS per CNOT, no SWAP, the same operator, for bound and free circuits."""
    pytest.importorskip("qiskit_ionq")
    from hqc.export.targets import ionq_native_target

    device = DeviceTarget("ion", ionq_native_target(q), compiler="ionq")
    circuit = paper_circuit(q, n, m, c)
    for compiled in (circuit, reupload_circuit(q, n, m, c)[0]):  # bound, then all free
        isa, swaps = transpile_for(compiled, device)
        counts = isa.count_ops()
        assert swaps == 0 and set(counts) <= {"gpi", "gpi2", "ms"}
        assert counts["ms"] == (n + 1) * m * q * c
    isa, _ = transpile_for(circuit, device)
    assert Operator.from_circuit(isa).equiv(Operator(circuit))
    assert resolve_target("all_to_all").name == "all_to_all (ionq_native)"


def test_all_to_all_falls_back_without_qiskit_ionq(monkeypatch):
    monkeypatch.setitem(sys.modules, "qiskit_ionq", None)  # import fails as if not installed
    device = resolve_target("all_to_all")
    assert device.name == "all_to_all (rz_rx_rxx)" and device.compiler == "qiskit"
    assert set(device.target.operation_names) == {"rz", "rx", "rxx", "measure"}
    assert resolve_target("all_to_all_generic").name == "all_to_all (rz_rx_rxx)"


def test_checkpoint_with_another_compilation_loads(tiny_data_dir, tmp_path):
    """A QuantumLayer's compiled buffers come from the code, its trained weights from the file."""
    args = projection_args(tiny_data_dir)
    cli = main(args, run=False)
    state = cli.model.state_dict()
    buffers = [k for k in state if k.startswith("core.layer.") and not k.endswith("weight")]
    assert buffers
    state[buffers[0]] = torch.zeros(3)  # another shape, as another hqc version compiles it
    state["core.layer.net.old_table"] = torch.zeros(2)
    weight = state["core.layer.net.weight"] = state["core.layer.net.weight"] + 0.5
    torch.save({"state_dict": state}, tmp_path / "old.ckpt")
    model, _ = load_checkpoint(args, tmp_path / "old.ckpt")
    torch.testing.assert_close(model.core.layer.weight, weight.to(model.core.layer.weight.dtype))
    state["readout.linear.weight"] = torch.zeros(5, 5)  # a trained tensor must still match
    torch.save({"state_dict": state}, tmp_path / "bad.ckpt")
    with pytest.raises(UserError, match="does not fit the config's model"):
        load_checkpoint(args, tmp_path / "bad.ckpt")


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
    with pytest.raises(UserError, match="a 26-qubit circuit does not fit target 'all_to_all"):
        check_fits(26, resolve_target("all_to_all"))
    with pytest.raises(UserError, match="does not fit target 'a'"):
        transpile_for(paper_circuit(4), DeviceTarget("a", all_to_all_target(3)))


def test_cli_user_errors_exit_2(tiny_data_dir, tmp_path, capsys):
    """``python -m hqc.export``: one line, exit 2, for each bad input, nothing written.

    One case runs as a subprocess (the module's entry point); the others call the same guarded
    entry in process (each subprocess pays the imports again).
    """
    from hqc.errors import run_guarded
    from hqc.export.__main__ import main as export_main

    classical = config_args("classical.yaml", tiny_data_dir)
    ckpt = checkpoint(classical, tmp_path / "c.ckpt")
    hybrid = config_args("hybrid.yaml", tiny_data_dir)
    hybrid_ckpt = checkpoint(hybrid, tmp_path / "h.ckpt")
    out = ["--out", str(tmp_path / "out")]
    done = subprocess.run(
        [sys.executable, "-m", "hqc.export", "export", *classical, "--ckpt_path", str(ckpt), *out],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "no quantum stage" in done.stderr.splitlines()[-1]
    cases = {
        "is not a file": ["export", *classical, "--ckpt_path", str(tmp_path / "none.ckpt")],
        "unknown target 'nope'": ["run", *classical, "--ckpt_path", str(ckpt), "--backend", "nope"],
        "unknown target 'ion'": ["export", *hybrid, "--ckpt_path", str(hybrid_ckpt), "--targets",
                                 "heavy_hex", "ion"],
        "a 9-qubit circuit does not fit target 'fake:FakeJakartaV2' (7 qubits)": [
            "export", *hybrid, "--ckpt_path", str(hybrid_ckpt), "--targets", "fake:FakeJakartaV2"],
        "a 8-qubit circuit does not fit target 'fake:FakeJakartaV2'": [
            "run", *hybrid, "--ckpt_path", str(hybrid_ckpt), "--backend", "fake:FakeJakartaV2"],
        "--limit must be >= 1": ["run", *hybrid, "--ckpt_path", str(hybrid_ckpt), "--limit", "0"],
    }  # fmt: skip
    for message, argv in cases.items():
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            run_guarded(lambda argv=argv: export_main([*argv, *out]))
        assert exit_info.value.code == 2, message
        err = capsys.readouterr().err.strip().splitlines()  # (model loading logs progress too)
        errors = [line for line in err if line.startswith("error:")]
        assert errors == err[-1:] and message in errors[0], (message, err)
    assert not (tmp_path / "out").exists()


def _relabelled_head(args, data_dir, root, write_split):
    """The seeded projection head with a readout whose logit gap is ~N(0, 1.5²) over the pool,
    and a copy of the tiny data labelled by its exact predictions (exact accuracy 1).

    Every sentence is then right with a margin that noise (which shrinks ⟨Z⟩) can only
    reduce: the noisy loss rises above the exact one for every sentence, without the
    cancellations of a random labelling.
    """
    cli = main(args, run=False)
    model = cli.model.eval()
    rows = {s: [json.loads(line) for line in (data_dir / f"{s}.jsonl").open()] for s in SPLITS}
    texts = [row["text"] for split in rows.values() for row in split]
    captured = []
    hook = model.readout.register_forward_hook(lambda _m, a, _o: captured.append(a[0]))
    with torch.no_grad():
        model(texts)
    hook.remove()
    e = captured[0][:, 0].double()
    scale = 1.5 / e.std()
    with torch.no_grad():
        model.readout.linear.weight.copy_(torch.tensor([[-scale / 2], [scale / 2]]))
        model.readout.linear.bias.copy_(torch.tensor([1, -1]) * scale * e.median() / 2)
        labels = model(texts).argmax(-1).tolist()
    labelled = root / "relabelled"
    labelled.mkdir()
    by_text = dict(zip(texts, labels, strict=True))
    for split, split_rows in rows.items():
        write_split(
            labelled / f"{split}.jsonl", [{**r, "label": by_text[r["text"]]} for r in split_rows]
        )
    torch.save({"state_dict": model.state_dict()}, root / "relabelled.ckpt")
    return labelled, root / "relabelled.ckpt"


SPLITS = ("train", "validation", "test")


def test_fake_backend_test_split_matches_noisy_callback(tiny_data_dir, tmp_path, write_split):
    """The test split on FakeJakartaV2 (BackendSamplerV2) vs NoisyAerValidation on the same
    calibration (fake:FakeJakartaV2, its own transpilation and shots), 32 sentences.

    Accuracy: each run's accuracy is a mean of independent Bernoulli(p_i) (sentence i right
    under shot noise), whose variance Σ p_i(1-p_i)/N² is at most the binomial p̄(1-p̄)/N
    (p(1-p) is concave); the difference of two runs is within 3·sqrt(2 p̄(1-p̄)/N). Loss: by the
    delta method a sentence's loss has variance σ(-|g_i|)²·w²·(1-e_i²)/S (g_i its exact logit
    gap, w the readout's gap weight, e_i its exact ⟨Z⟩, S shots). Noise and weights must show:
    the backend loss is not the exact loss, and a run with shifted circuit weights differs.
    The two paths' losses are not compared: the callback compiles the circuit with its weights
    free, the backend run with them bound, and the two compilations differ in noise by more
    than shot noise (measured: loss 1.58 vs 2.11, accuracies equal within the bound).
    """
    from hqc.export.circuit_layer import exact_expectations
    from hqc.noise.validation import NoisyAerValidation

    shots, z = 4000, 3.0
    data, ckpt = _relabelled_head(
        projection_args(tiny_data_dir), tiny_data_dir, tmp_path, write_split
    )
    args = projection_args(data)
    device = resolve_target("fake:FakeJakartaV2")

    def split_metrics(evaluate, shift=0.0):
        model, cli = load_checkpoint(args, ckpt)
        with torch.no_grad():
            model.core.layer.weight.add_(shift)
        return evaluate_test_split(model, cli.datamodule, evaluate), model, cli

    exact, model, cli = split_metrics(exact_expectations)
    fake, _, _ = split_metrics(SamplerEvaluator(device.backend, shots, None, seed=0))
    shifted, _, _ = split_metrics(SamplerEvaluator(device.backend, shots, None, seed=0), 1.0)
    callback = NoisyAerValidation("fake:FakeJakartaV2", shots=shots, seed=1).evaluate(
        load_checkpoint(args, ckpt)[0], [cli.datamodule.test_dataloader()]
    )
    assert exact["test/acc"] == 1.0  # labels are the exact predictions

    texts = list(cli.datamodule.test_data.texts)
    captured = []
    hook = model.readout.register_forward_hook(lambda _m, a, _o: captured.append(a[0]))
    with torch.no_grad():
        gap = model(texts).diff(dim=-1)[:, 0].double().abs()
    hook.remove()
    e = captured[0][:, 0].double()
    w = model.readout.linear.weight.diff(dim=0).abs().item()
    n = len(texts)
    loss_se = float(torch.sqrt((torch.sigmoid(-gap) ** 2 * w**2 * (1 - e**2) / shots).sum()) / n)
    p = (fake["test/acc"] + callback["acc"]) / 2
    acc_tolerance = z * np.sqrt(2 * p * (1 - p) / n)

    assert abs(fake["test/acc"] - callback["acc"]) <= acc_tolerance
    assert fake["test/loss"] - exact["test/loss"] > z * loss_se  # the calibrated noise acts
    # the same backend path, seed and shots: ignoring the weights would give the same loss
    assert abs(shifted["test/loss"] - fake["test/loss"]) > z * np.sqrt(2) * loss_se
