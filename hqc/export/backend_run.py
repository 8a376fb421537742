"""Run a checkpoint's test split on any ``BackendV2`` through Qiskit's ``BackendSamplerV2``.

Each quantum stage's bound circuit is transpiled once for the backend, with measurements on the
qubits its Z-type observables touch; a batch is one PUB (the circuit and a ``(B, n)`` array of
input values) at the configured shots, and the expectations come from the measured bit strings.
A fake backend (``qiskit_ibm_runtime.fake_provider``) simulates its calibrated noise offline; a
cloud backend (``IonQProvider().get_backend(...)``, ``QiskitRuntimeService().backend(...)``)
runs the same way, created by its provider and passed in untouched. Every PUB's result is cached
on disk under a hash of (backend, shots, seed, transpiled circuit, values), so an interrupted
hardware run resumes without paying for finished batches again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from qiskit import ClassicalRegister, QuantumCircuit, qasm3
from qiskit.primitives import BackendSamplerV2
from qiskit.providers import BackendV2
from qiskit.quantum_info import SparsePauliOp
from qiskit.transpiler.preset_passmanagers import generate_preset_pass_manager

from hqc.errors import UserError
from hqc.export.circuit_layer import (
    CircuitLayer,
    device_layers,
    ordered_inputs,
    replace_quantum_layers,
)


def measured_circuit(
    circuit: QuantumCircuit, observables: list[SparsePauliOp]
) -> tuple[QuantumCircuit, list[SparsePauliOp]]:
    """``circuit`` measuring the qubits ``observables`` act on, and the observables on those bits.

    Raises:
        UserError: an observable with X or Y terms (a sampler measures Z only; rotate it first).
    """
    support: list[int] = []
    for op in observables:
        if op.paulis.x.any():
            raise UserError(
                f"observable {op.paulis.to_labels()} is not diagonal (Z/I only): a sampler run "
                "measures in the Z basis"
            )
        support += [q for q in np.flatnonzero(op.paulis.z.any(axis=0)) if q not in support]
    measured = circuit.copy()
    bits = ClassicalRegister(len(support), "meas")
    measured.add_register(bits)
    measured.measure(support, bits)
    on_bits = [
        SparsePauliOp.from_sparse_list(
            [("Z" * len(q), [support.index(i) for i in q], c) for q, c in _z_terms(op)],
            len(support),
        )
        for op in observables
    ]
    return measured, on_bits


def _z_terms(op: SparsePauliOp) -> list[tuple[list[int], complex]]:
    return [
        (list(np.flatnonzero(z)), coeff) for z, coeff in zip(op.paulis.z, op.coeffs, strict=True)
    ]


class SamplerEvaluator:
    """Expectations from ``BackendSamplerV2`` on ``backend``: one PUB per circuit and batch.

    Args:
        backend: any ``BackendV2``.
        shots: shots per circuit and input row.
        cache_dir: where finished PUB results are kept (None: no cache).
        seed: transpiler seed, and simulator seed where the backend has one (fake backends).
        optimization_level: the preset pass manager's level.
    """

    def __init__(
        self,
        backend: BackendV2,
        shots: int,
        cache_dir: str | Path | None = None,
        seed: int = 0,
        optimization_level: int = 1,
    ) -> None:
        if shots < 1:
            raise UserError(f"shots must be >= 1, got {shots}")
        self.backend = backend
        self.shots = shots
        self.seed = seed
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        options: dict[str, Any] = {"default_shots": shots}
        if hasattr(backend.options, "seed_simulator"):  # simulators only; a QPU takes no seed
            options["seed_simulator"] = seed
        self.sampler = BackendSamplerV2(backend=backend, options=options)
        self.pass_manager = generate_preset_pass_manager(
            optimization_level, backend=backend, seed_transpiler=seed
        )
        self._compiled: dict[int, tuple[QuantumCircuit, list[SparsePauliOp], bytes]] = {}
        self.pubs_run = 0

    def _compile(
        self, circuit: QuantumCircuit, observables: list[SparsePauliOp]
    ) -> tuple[QuantumCircuit, list[SparsePauliOp], bytes]:
        key = id(circuit)
        if key not in self._compiled:
            measured, on_bits = measured_circuit(circuit, observables)
            isa = self.pass_manager.run(measured)
            # OpenQASM 3 text names parameters by name only: QPY would carry the circuit's
            # generated name and the parameters' UUIDs, fresh in every process
            self._compiled[key] = (isa, on_bits, qasm3.dumps(isa).encode())
        return self._compiled[key]

    def __call__(
        self, circuit: QuantumCircuit, observables: list[SparsePauliOp], values: np.ndarray
    ) -> np.ndarray:
        """Expectations ``(B, n_obs)`` for input rows ``values`` ``(B, n)``, cached per PUB."""
        isa, on_bits, program = self._compile(circuit, observables)
        digest = hashlib.sha256(
            f"{self.backend.name}|{self.shots}|{self.seed}|".encode() + program + values.tobytes()
        ).hexdigest()
        path = None if self.cache_dir is None else self.cache_dir / f"{digest}.npy"
        if path is not None and path.is_file():
            return np.load(path)
        pub = (isa, values) if values.shape[1] else (isa,)
        bits = self.sampler.run([pub]).result()[0].data.meas
        self.pubs_run += 1
        out = np.stack([bits.expectation_values(op) for op in on_bits], -1).reshape(len(values), -1)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, out)
            tmp.replace(path)  # atomic: a killed run never leaves a half-written result
        return out


def route_through(model: LightningModule, evaluate: Any, on_device: str = "core") -> list[str]:
    """Replace the device stages (:func:`~hqc.export.circuit_layer.device_layers`) of ``model``
    by their bound circuits evaluated by ``evaluate``; the others stay exact (torch)."""
    names = [name for name, _ in device_layers(model, on_device)]
    return replace_quantum_layers(
        model,
        lambda _, layer: CircuitLayer(
            ordered_inputs(layer), layer.observables, layer.amplitude_encoded, evaluate
        ),
        names,
    )


def evaluate_test_split(
    model: LightningModule,
    datamodule: LightningDataModule,
    evaluate: SamplerEvaluator,
    limit_batches: int | None = None,
    on_device: str = "core",
) -> dict[str, float]:
    """The test split's metrics with the device stages run through ``evaluate``.

    ``limit_batches``: only the first that many test batches (the test loader is unshuffled, so
    a rerun with a larger limit reuses every cached batch). ``on_device``: ``core`` (the
    paper's split: sQEs exact on this CPU, the core on the backend) or ``all``.
    """
    route_through(model, evaluate, on_device)
    trainer = Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        accelerator="cpu",
        limit_test_batches=limit_batches,
    )
    (metrics,) = trainer.test(model, datamodule=datamodule, verbose=False)
    return metrics
