"""The paper's shipped matrices (ablations/{qubits,modules,screen}.yaml) expand as documented."""

from itertools import combinations
from pathlib import Path

import numpy as np
import yaml

from hqc.ablate.design import cells, coded
from hqc.ablate.matrix import load_matrix

ABLATIONS = Path(__file__).parents[1] / "ablations"


def test_qubit_sweep_pairs_every_classical_cell_with_the_hybrid_at_its_qubits():
    matrix = load_matrix(ABLATIONS / "qubits.yaml")
    design = cells(matrix)
    assert len(design) == 7 * 2 and len(matrix.seeds) >= 3
    assert [c.levels["qubits"] for c in design[:7]] == ["4", "6", "8", "10", "12", "14", "16"]
    classical = matrix.factors["head"]["classical"]
    assert classical.match is not None and classical.match.level == "hybrid"
    assert list(matrix.factors) == ["qubits", "head"]  # settings before the projection swap


def test_modules_moves_one_factor_at_a_time():
    matrix = load_matrix(ABLATIONS / "modules.yaml")
    design = cells(matrix)
    base = {f: next(iter(levels)) for f, levels in matrix.factors.items()}
    assert design[0].levels == base
    others = sum(len(levels) - 1 for levels in matrix.factors.values())
    assert len(design) == 1 + others
    for cell in design[1:]:
        assert sum(cell.levels[f] != base[f] for f in base) == 1


def test_screen_is_a_16_run_resolution_iv_fraction_of_seven_factors():
    matrix = load_matrix(ABLATIONS / "screen.yaml")
    x = coded(matrix)
    assert x.shape == (16, 7) and len(cells(matrix)) == 16
    assert list(matrix.factors) == [
        "qubits", "depth", "connectivity", "reuploads", "encoders", "lr", "weight_decay"
    ]  # fmt: skip
    assert np.all(x.sum(axis=0) == 0)  # balanced
    assert np.allclose(x.T @ x, 16 * np.eye(7))  # main effects orthogonal
    for i, j in combinations(range(7), 2):  # no main effect aliased with a 2-factor interaction
        for k in range(7):
            assert abs(x[:, k] @ (x[:, i] * x[:, j])) < 16, (k, i, j)


def test_bodies_pairs_every_head_with_the_matched_classical_head_on_each_body(
    monkeypatch, tiny_data_dir
):
    from hqc.ablate import plan

    monkeypatch.setenv("HQC_DATA_DIR", str(tiny_data_dir))
    counted = []  # the matched count itself is tested in test_ablate.py; here: what is matched
    monkeypatch.setattr(plan, "trainable_parameters", lambda args, where: counted.append(args) or 7)
    matrix = load_matrix(ABLATIONS / "bodies.yaml")
    design = cells(matrix)
    assert len(design) == 5 * 3 and len(matrix.seeds) == 10
    assert [c.levels["body"] for c in design[::5]] == ["minilm", "mpnet", "minilm_setfit"]
    run = next(
        r
        for r in plan.runs(matrix)
        if r.cell.levels == {"head": "classical", "body": "minilm_setfit"}
    )
    config = yaml.safe_load(plan.resolved_config(matrix, run))
    callbacks = [c["class_path"] for c in config["trainer"]["callbacks"]]
    assert callbacks[:2] == [
        "hqc.fixed_projection.FitFixedProjection", "hqc.setfit_encoder.TuneSetFitBody"
    ]  # fmt: skip
    encoder = config["model"]["init_args"]["encoder"]
    assert encoder["class_path"] == "hqc.setfit_encoder.SetFitEncoder"
    assert encoder["init_args"]["num_iterations"] == 5 and encoder["init_args"].get("seed") is None
    assert config["model"]["init_args"]["core"]["init_args"]["parameters"] == 7
    (hybrid,) = counted  # the hybrid on the same tuned body
    assert "--config=" + str(ABLATIONS / "setfit_body.yaml") in hybrid
    assert not any("pca_head" in a for a in hybrid)


def test_mpnet_matrices_are_the_minilm_ones_on_mpnet():
    mpnet = "--model.init_args.encoder.init_args.model=all-mpnet-base-v2"
    pairs = (("qubits", {"16"}), ("modules", set()), ("screen", set()), ("finetune", set()))
    for name, dropped in pairs:
        minilm, other = (load_matrix(ABLATIONS / f) for f in (f"{name}.yaml", f"{name}_mpnet.yaml"))
        assert other.args == (*minilm.args, mpnet)
        assert other.seeds == minilm.seeds and other.design == minilm.design
        assert other.reference == minilm.reference and other.plot == minilm.plot
        expected = {
            f: {k: v for k, v in levels.items() if k not in dropped}
            for f, levels in minilm.factors.items()
        }
        assert other.factors == expected
