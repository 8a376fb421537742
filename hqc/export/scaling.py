"""Fidelity and time of the paper's re-upload circuit vs qubits on both device classes (a plot)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from hqc.export.backend_run import measured_circuit
from hqc.export.report import write_table
from hqc.export.resources import resources
from hqc.export.targets import DeviceTarget
from hqc.quantum.circuits import reupload_circuit, z_observables


def scaling_rows(
    qubits: Sequence[int],
    devices: Sequence[DeviceTarget],
    reuploads: int = 2,
    layers: int = 2,
    connectivity: int = 2,
    seed: int = 0,
) -> list[dict[str, object]]:
    """Resources of the paper circuit (random weights, Z on qubit 0) per device and width."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in qubits:
        circuit, _, weights = reupload_circuit(q, reuploads, layers, connectivity)
        bound = circuit.assign_parameters(
            dict(zip(weights, rng.uniform(-np.pi, np.pi, len(weights)), strict=True))
        )
        measured, _ = measured_circuit(bound, z_observables(q))
        for device in devices:
            if q <= device.target.num_qubits:
                rows.append(resources(measured, device, "core", seed)[1].row())
    return rows


def plot_scaling(rows: list[dict[str, object]], out: str | Path) -> Path:
    """Write ``scaling.csv`` and ``fidelity_time_vs_qubits.png`` under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_table(rows, out / "scaling")
    figure = Figure(figsize=(10, 4))  # no pyplot: no GUI backend, no global state
    left, right = figure.subplots(1, 2)
    for target in dict.fromkeys(r["target"] for r in rows):
        mine = [r for r in rows if r["target"] == target]
        q = [r["qubits"] for r in mine]
        left.plot(q, [r["fidelity"] for r in mine], "o-", label=target)
        right.plot(q, [r["shot_time_s"] * 1e3 for r in mine], "o-", label=target)
    left.set(xlabel="qubits Q", ylabel="estimated circuit fidelity", yscale="log")
    left.set_title("Re-upload PQC (N=2, M=2, C=2)")
    right.set(xlabel="qubits Q", ylabel="time per shot [ms]", yscale="log")
    right.set_title("circuit + per-shot overhead")
    left.legend()
    figure.tight_layout()
    path = out / "fidelity_time_vs_qubits.png"
    figure.savefig(path, dpi=120)
    return path
