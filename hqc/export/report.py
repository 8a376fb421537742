"""The side-by-side resource report of a trained head on each device target.

For every quantum stage and target: the transpiled circuit (written as QPY for the user to
run), depth, gate counts, SWAPs and fidelity (:mod:`hqc.export.resources`). For every target:
the shots one sentence needs for the readout to separate its classes, wall-clock and energy per
sentence and per test split, beside the measured time of the same head simulated in hqc on this
CPU (and that time × a stated CPU power).

Only the device stages (``on_device``, :func:`~hqc.export.circuit_layer.device_layers`) count
in the per-target summary: by default the core, as the paper runs its sQEs classically (their
amplitude loaders are thousands of gates deep; ``all`` shows what putting them on the device
would cost). Every device stage runs the same shots per sentence; the shots are those the
readout needs at the device stages' combined fidelity
(:func:`~hqc.export.resources.shots_to_separate`), a lower bound when several stages run on
the device, as the earlier stages' own shot noise is not counted.
"""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule
from qiskit import qpy

from hqc.export.backend_run import measured_circuit
from hqc.export.circuit_layer import device_layers, ordered_inputs, quantum_layers
from hqc.export.resources import (
    CPU_POWER_W,
    POWER_W,
    Resources,
    device_class,
    resources,
    shots_to_separate,
)
from hqc.export.targets import DeviceTarget


def _readout_inputs(model: LightningModule, texts: list[str]) -> tuple[np.ndarray, float]:
    """Exact inputs of the readout ``(N, n_obs)`` and the head's measured seconds per sentence.

    The time covers projection → readout on precomputed embeddings (the encoder runs
    classically in both settings), single-threaded as torch is configured. A frozen encoder
    reads its embedding cache first (as fit and test do), so the texts are encoded only once.
    """
    captured: list[torch.Tensor] = []
    hook = model.readout.register_forward_hook(lambda _m, args, _o: captured.append(args[0]))
    warm = getattr(model.encoder, "warm", None)
    if warm is not None:
        warm(texts)
    with torch.no_grad():
        embeddings = model.encoder(texts)
        start = time.perf_counter()
        x = model.projection(embeddings)
        model.readout(model.core(model.angle_encoder(x)))
        seconds = (time.perf_counter() - start) / len(texts)
    hook.remove()
    return captured[0].double().numpy(), seconds


def head_report(
    model: LightningModule,
    texts: list[str],
    devices: list[DeviceTarget],
    out: str | Path,
    power_w: float | None = None,
    on_device: str = "core",
) -> tuple[list[Resources], list[dict[str, Any]]]:
    """Transpile every quantum stage for every device; write tables and transpiled circuits.

    The summary counts the ``on_device`` stages (``core`` or ``all``).

    Returns:
        The per-circuit resources and the per-target summary rows (also written as
        ``resources.md``/``resources.csv`` and ``summary.csv`` under ``out``).
    """
    out = Path(out)
    layers = quantum_layers(model)
    on_chip = [name for name, _ in device_layers(model, on_device)]
    readout_in, cpu_seconds = _readout_inputs(model, texts)
    linear = getattr(model.readout, "linear", None)
    circuits = []
    summary = []
    for device in devices:
        stem = re.sub(r"\W+", "_", device.name.split(" ")[0])
        (out / "transpiled" / stem).mkdir(parents=True, exist_ok=True)
        stage_rows = []
        for name, layer in layers:
            measured, _ = measured_circuit(ordered_inputs(layer), layer.observables)
            isa, row = resources(measured, device, name)
            with (out / "transpiled" / stem / f"{name.replace('.', '_')}.qpy").open("wb") as f:
                qpy.dump(isa, f)
            stage_rows.append(row)
        circuits += stage_rows
        # the device stages' fidelity (no error in any of them) stands in for the readout's F
        device_rows = [r for r in stage_rows if r.stage in on_chip]
        fidelity = float(np.prod([r.fidelity for r in device_rows]))
        shots = None
        if isinstance(linear, torch.nn.Linear):
            weight = linear.weight.detach().double().numpy()
            bias = linear.bias.detach().double().numpy()
            shots = int(np.ceil(shots_to_separate(readout_in, weight, bias, fidelity)))
        times = [r.shot_time_s for r in device_rows]
        per_sentence = None if shots is None or None in times else shots * sum(times)
        power = power_w or POWER_W[device_class(device)]
        summary.append(
            {
                "target": device.name,
                "class": device_class(device),
                "device_stages": " + ".join(on_chip),
                "fidelity": fidelity,
                "shots_per_sentence": shots,
                "seconds_per_sentence": per_sentence,
                "seconds_per_test_set": None if per_sentence is None else per_sentence * len(texts),
                "power_w": power,
                "joules_per_sentence": None if per_sentence is None else per_sentence * power,
            }
        )
    summary.append(
        {
            "target": "hqc torch simulator (this CPU, measured)",
            "class": "classical",
            "device_stages": "none (whole head simulated)",
            "fidelity": 1.0,
            "shots_per_sentence": None,
            "seconds_per_sentence": cpu_seconds,
            "seconds_per_test_set": cpu_seconds * len(texts),
            "power_w": CPU_POWER_W,
            "joules_per_sentence": cpu_seconds * CPU_POWER_W,
        }
    )
    write_table([r.row() for r in circuits], out / "resources")
    write_table(summary, out / "summary")
    return circuits, summary


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def write_table(rows: list[dict[str, Any]], stem: Path) -> None:
    """Write ``rows`` as ``stem.csv`` and a Markdown table ``stem.md``."""
    header = list(rows[0])
    with stem.with_suffix(".csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(row[k]) for k in header) + " |" for row in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
