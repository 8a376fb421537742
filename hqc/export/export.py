"""Export a trained head for a quantum computer, and load the export back.

An export directory holds, per quantum stage, the circuit with the trained weights bound and its
inputs free as QPY (exact, Qiskit's own format) and OpenQASM 3 (portable, any vendor's stack);
the resolved config and the classical stages' weights (encoder name, projection/readout, norms)
to rebuild the pipeline around them; and ``manifest.json`` that ties each circuit to its module,
its inputs (in order, with what computes them) and its observables. :func:`load_export` rebuilds
the classifier from these files alone and evaluates every circuit exactly: the predictions equal
the checkpoint's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from qiskit import qasm3, qpy
from qiskit.quantum_info import SparsePauliOp
from torch import nn

from hqc.classifier import STAGES
from hqc.errors import UserError
from hqc.export.circuit_layer import (
    CircuitLayer,
    exact_expectations,
    ordered_inputs,
    quantum_layers,
    replace_quantum_layers,
)
from hqc.main import main
from hqc.quantum.layer import QuantumLayer

FORMAT = "hqc-export/1"
MANIFEST = "manifest.json"
CONFIG = "config.yaml"
CLASSICAL = "classical.pt"


def _compiled_prefixes(model: nn.Module) -> tuple[tuple[str, ...], set[str]]:
    """QuantumLayer key prefixes, and their trained parameters' state-dict keys.

    Everything else a QuantumLayer keeps in its state dict is compiled from its circuit (gate
    tables, index maps of the torch simulator) and rebuilt from the config.
    """
    prefixes, params = [], set()
    for name, module in model.named_modules():
        if isinstance(module, QuantumLayer):
            prefixes.append(f"{name}.")
            params |= {f"{name}.{key}" for key, _ in module.named_parameters()}
    return tuple(prefixes), params


def load_checkpoint(cli_args: list[str], ckpt_path: str | Path) -> tuple[LightningModule, Any]:
    """The model of ``cli_args`` (``--config ...`` and overrides) with ``ckpt_path``'s weights.

    A QuantumLayer's compiled buffers are taken from the freshly built model, not the file: they
    follow from the circuit, and a checkpoint written by another hqc version may hold another
    compilation of the same circuit. Every trained parameter and every other buffer must match.

    Returns the model (eval mode) and the parsed CLI (its config and datamodule).

    Raises:
        UserError: the checkpoint file is missing or does not match the config's model.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"--ckpt_path {str(path)!r} is not a file")
    cli = main(cli_args, run=False)
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    prefixes, params = _compiled_prefixes(cli.model)
    compiled = {k for k in [*state, *cli.model.state_dict()] if k.startswith(prefixes)} - params
    state = {k: v for k, v in state.items() if k not in compiled}
    try:
        missing, unexpected = cli.model.load_state_dict(state, strict=False)
        missing = [k for k in missing if k not in compiled]
        if missing or unexpected:
            raise RuntimeError(f"missing keys {missing}, unexpected keys {unexpected}")
    except RuntimeError as error:
        raise UserError(
            f"checkpoint {str(path)!r} does not fit the config's model: {error}"
        ) from error
    return cli.model.eval(), cli


def _class_path(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _file_stem(module: str) -> str:
    return module.replace(".", "_")


def export_model(model: LightningModule, cli: Any, out: str | Path) -> dict[str, Any]:
    """Write ``model``'s quantum stages, classical weights, config and manifest into ``out``.

    Returns:
        The manifest (also written as ``out/manifest.json``).

    Raises:
        UserError: the model has no quantum stage.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    layers = quantum_layers(model)
    stages = []
    for name, layer in layers:
        circuit = ordered_inputs(layer)
        circuit.name = name
        stem = _file_stem(name)
        with (out / f"{stem}.qpy").open("wb") as f:
            qpy.dump(circuit, f)
        (out / f"{stem}.qasm").write_text(qasm3.dumps(circuit), encoding="utf-8")
        _, sources = layer.qiskit_circuit()
        stages.append(
            {
                "module": name,
                "qpy": f"{stem}.qpy",
                "qasm3": f"{stem}.qasm",
                "num_qubits": circuit.num_qubits,
                "inputs": [
                    {"name": p.name, "source": s.name}
                    for p, s in zip(circuit.parameters, sources, strict=True)
                ],
                "amplitude_encoded": layer.amplitude_encoded,
                "observables": [
                    [[label, float(c.real)] for label, c in op.to_list()]
                    for op in layer.observables
                ],
            }
        )
    quantum_prefixes = tuple(f"{name}." for name, _ in layers)
    classical = {k: v for k, v in model.state_dict().items() if not k.startswith(quantum_prefixes)}
    torch.save(classical, out / CLASSICAL)
    (out / CONFIG).write_text(cli.parser.dump(cli.config), encoding="utf-8")
    manifest = {
        "format": FORMAT,
        "config": CONFIG,
        "classical_state": CLASSICAL,
        "pipeline": {
            stage: _class_path(getattr(model, stage)) for stage in STAGES if hasattr(model, stage)
        },
        "encoder_model": getattr(getattr(model, "encoder", None), "model_name", None),
        "inputs_rule": (
            "amplitude-encoded stages: inputs in_00000.. are amplitude_loader_angles(state) "
            "(hqc.quantum.circuits) of the stage's amplitude-encoded input, then the stage inputs"
        ),
        "quantum_stages": stages,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def read_circuit(export_dir: Path, stage: dict[str, Any], source: str = "qpy") -> Any:
    """One exported circuit, from its QPY file or (``source="qasm3"``) its OpenQASM 3 file.

    Raises:
        UserError: OpenQASM 3 reading without ``qiskit-qasm3-import`` (``hardware`` extra).
    """
    if source == "qpy":
        with (export_dir / stage["qpy"]).open("rb") as f:
            return qpy.load(f)[0]
    try:
        return qasm3.loads((export_dir / stage["qasm3"]).read_text(encoding="utf-8"))
    except qasm3.QASM3ImporterError as error:
        raise UserError(
            f"cannot read {stage['qasm3']}: {error} (pip install hqc[hardware])"
        ) from error


def load_export(export_dir: str | Path, source: str = "qpy") -> LightningModule:
    """Rebuild the classifier from an export: config + classical weights + exported circuits.

    Each quantum stage becomes a :class:`~hqc.export.circuit_layer.CircuitLayer` on the
    exported circuit (``source``: ``qpy`` or ``qasm3``), evaluated exactly.

    Raises:
        UserError: not an export directory, or a different format version.
    """
    export_dir = Path(export_dir)
    path = export_dir / MANIFEST
    if not path.is_file():
        raise UserError(f"{str(export_dir)!r} is not an hqc export (no {MANIFEST})")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise UserError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    model = main(["--config", str(export_dir / manifest["config"])], run=False).model
    stages = {stage["module"]: stage for stage in manifest["quantum_stages"]}

    def make(name: str, layer: Any) -> CircuitLayer:
        stage = stages[name]
        observables = [SparsePauliOp.from_list(terms) for terms in stage["observables"]]
        circuit = read_circuit(export_dir, stage, source)
        return CircuitLayer(circuit, observables, stage["amplitude_encoded"], exact_expectations)

    replace_quantum_layers(model, make)
    missing, unexpected = model.load_state_dict(
        torch.load(export_dir / manifest["classical_state"], weights_only=True), strict=False
    )
    if missing or unexpected:
        raise UserError(f"{export_dir}: classical weights do not fit: {missing or unexpected}")
    return model.eval()
