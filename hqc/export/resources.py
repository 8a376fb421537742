"""Per-target resources of a circuit: transpiled depth, gate counts, routing SWAPs, fidelity, time.

Everything is read from the device's :class:`~qiskit.transpiler.Target` (gate errors and
durations: FakeFez's calibration snapshot, or the IonQ constants of
:mod:`hqc.export.targets`), so a user's own target is estimated the same way. The fidelity is
the product of (1 - error) over every transpiled gate and measurement; the time per shot is
the circuit's critical path plus the per-shot repetition overhead below.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from qiskit import QuantumCircuit
from qiskit.exceptions import QiskitError

from hqc.export.targets import DeviceTarget, check_fits

_NOT_GATES = frozenset({"barrier", "delay", "measure", "reset"})

#: Per-shot overhead between repetitions, seconds. Superconducting: IBM's default ``rep_delay``
#: of 250 µs (``FakeFez().configuration().default_rep_delay``, from IBM's published backend
#: configuration). Trapped ion: register reset 25 µs, IonQ's figure on
#: https://learn.microsoft.com/azure/quantum/provider-ionq (Harmony; none listed for Aria).
SHOT_OVERHEAD_S = {"superconducting": 250e-6, "trapped_ion": 25e-6}

#: Whole-system electrical power, watts, with its public source. Superconducting: "slightly
#: less than 25 kilowatts", mostly the dilution refrigerator (IEEE Spectrum, "How Much Power
#: Will Quantum Computing Need?", 2015, D-Wave 2X). Trapped ion: no vendor figure is public
#: that we could find; the same 25 kW is assumed (no cryostat, but lasers and vacuum), and the
#: ``--power_w`` option replaces either.
POWER_W = {"superconducting": 25e3, "trapped_ion": 25e3}

#: Power assumed for the classical inference it is compared with: a 65 W desktop CPU package
#: (a stated assumption; this machine exposes no energy counters, /sys/class/powercap).
CPU_POWER_W = 65.0


@dataclass
class Resources:
    """One circuit on one target."""

    target: str
    stage: str
    qubits: int
    depth: int
    ops_1q: int
    ops_2q: int
    swaps: int
    fidelity: float
    shot_time_s: float | None

    def row(self) -> dict[str, object]:
        """Flat dict for CSV/Markdown tables."""
        return asdict(self)


def device_class(device: DeviceTarget) -> str:
    """``trapped_ion`` for a fully connected target, else ``superconducting`` (its overheads)."""
    n = device.target.num_qubits
    coupling = device.target.build_coupling_map()
    full = coupling is None or len(set(coupling.get_edges())) >= n * (n - 1)
    return "trapped_ion" if full else "superconducting"


def transpile_for(
    circuit: QuantumCircuit, device: DeviceTarget, seed: int = 0, optimization_level: int = 1
) -> tuple[QuantumCircuit, int]:
    """``circuit`` transpiled for ``device``, and the number of SWAPs routing inserted.

    SWAPs are counted on the DAG after every pass, before translation turns them into native
    2-qubit gates (3 each on CZ/CX devices).

    Raises:
        UserError: the circuit is wider than the device.
    """
    check_fits(circuit.num_qubits, device)
    manager = device.pass_manager(optimization_level, seed, parametric=bool(circuit.parameters))
    swaps = 0

    def watch(**kwargs: object) -> None:
        nonlocal swaps
        swaps = max(swaps, kwargs["dag"].count_ops().get("swap", 0))

    return manager.run(circuit, callback=watch), swaps


def resources(
    circuit: QuantumCircuit, device: DeviceTarget, stage: str = "", seed: int = 0
) -> tuple[QuantumCircuit, Resources]:
    """Transpile ``circuit`` (with its measurements) for ``device`` and estimate its cost."""
    isa, swaps = transpile_for(circuit, device, seed)
    target = device.target
    counts = {1: 0, 2: 0}
    log_fidelity = 0.0
    for instruction in isa.data:
        name = instruction.operation.name
        qargs = tuple(isa.find_bit(q).index for q in instruction.qubits)
        if name not in _NOT_GATES:
            counts[len(qargs)] = counts.get(len(qargs), 0) + 1
        if name in ("barrier", "delay"):
            continue
        properties = target[name].get(qargs) if name in target else None
        error = getattr(properties, "error", None) or 0.0
        log_fidelity += math.log1p(-min(error, 1.0 - 1e-300))
    try:
        duration = isa.estimate_duration(target, unit="s")
    except (QiskitError, KeyError, TypeError, AttributeError):  # a target without durations
        duration = None
    shot_time = None if duration is None else duration + SHOT_OVERHEAD_S[device_class(device)]
    return isa, Resources(
        target=device.name,
        stage=stage,
        qubits=circuit.num_qubits,
        depth=isa.depth(lambda i: i.operation.name not in ("barrier",)),
        ops_1q=counts[1],
        ops_2q=counts[2],
        swaps=swaps,
        fidelity=math.exp(log_fidelity),
        shot_time_s=shot_time,
    )


def shots_to_separate(
    expectations: np.ndarray, weight: np.ndarray, bias: np.ndarray, fidelity: float, z: float = 1.96
) -> float:
    """Median shots per sentence for the trained decision to clear ``z`` standard errors.

    The noisy expectations are modelled as ``F · e`` (global depolarising with the circuit's
    estimated fidelity F), and undone by the usual rescaling ``ê = m / F`` of the measured
    mean m (without it a low-fidelity head only reads out its bias). For each sentence the
    decision is the exact logit gap ``d = w·e + c`` between its top two classes (``w``, ``c``:
    their readout rows' difference); with S shots per circuit and independent observables the
    rescaled estimate's standard error is ``sqrt(Σ_j w_j² (1 - F² e_j²) / S) / F``, so
    ``S = z² Σ_j w_j² (1 - F² e_j²) / (F² d²)``: shots grow as 1/F².

    Args:
        expectations: exact ``(N, n_obs)`` expectations feeding a linear readout.
        weight: the readout's ``(classes, n_obs)`` weight.
        bias: the readout's ``(classes,)`` bias.
        fidelity: estimated circuit fidelity F.
        z: standard errors of margin (1.96: 95 % two-sided).
    """
    noisy = fidelity * expectations
    logits = expectations @ weight.T + bias
    top2 = np.argsort(logits, axis=1)[:, -2:]
    w = weight[top2[:, 1]] - weight[top2[:, 0]]
    gap = (
        np.take_along_axis(logits, top2[:, 1:], 1)[:, 0]
        - np.take_along_axis(logits, top2[:, :1], 1)[:, 0]
    )
    variance = (w**2 * (1 - noisy**2)).sum(1)
    return float(np.median(z**2 * variance / (fidelity * np.maximum(gap, 1e-12)) ** 2))
