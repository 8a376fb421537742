"""``NoisyAerValidation``: the validation and test splits re-evaluated on noisy qiskit-aer.

Training stays on the fast (exact or shot-sampled) torch path; this callback answers "what
would the trained model score on a noisy device?" next to the exact ``val/*`` metrics, as
``val_noisy/acc``, ``val_noisy/f1``, ``val_noisy/loss`` (``test_noisy/*`` at test) and
``val_noisy/seconds`` (its own wall time per pass).

Every :class:`~hqc.quantum.layer.QuantumLayer` of the model (hqc's stages and a user's own
alike) is found by :func:`~hqc.export.circuit_layer.quantum_layers`, except, by default
(``classical_encoders``), those inside a
:class:`~hqc.quantum.sqe.SimulatedQuantumEncoders` stage: the paper runs its sQEs classically and
only the second module on a QPU, and a 9-qubit sQE's amplitude loader is ~1,100 noisy gates per
sentence on Aer (minutes per validation pass). Those layers run as in training. Each layer sent
to Aer has its circuit, weights left as parameters, transpiled once per fit to the noise model's
basis (errors attach by gate name), and each pass binds the current weights and the batch's
inputs into one PUB of shape ``(batch, parameters)``. The classical stages run as they are: the
model's forward is reused with each quantum layer temporarily replaced by a
:class:`~hqc.export.circuit_layer.CircuitLayer` that calls Aer.

* ``shots: k``: Aer's ``SamplerV2`` on the measured circuit
  (:func:`~hqc.export.backend_run.measured_circuit`): shot noise, gate noise and readout error
  together. Observables must be Z-type.
* ``shots: null``: Aer's ``EstimatorV2`` with ``default_precision=0`` (its ``precision``
  otherwise adds Gaussian noise): exact noisy expectations. Aer's estimator ignores readout
  error, so the readout bit flip is applied analytically (each Pauli factor scales by 1 - 2p).

``method`` is always set explicitly: with shots and ≥ 10 qubits Aer's ``automatic`` method
silently switches to averaging trajectories. ``density_matrix`` simulates each input once and
samples its shots from the exact noisy distribution.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit_aer import AerSimulator
from qiskit_aer.primitives import EstimatorV2, SamplerV2
from torch import nn
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

from hqc.errors import UserError
from hqc.export.backend_run import measured_circuit
from hqc.export.circuit_layer import CircuitLayer, quantum_layers, replace_quantum_layers
from hqc.noise.aer import simulator, transpile_to_basis
from hqc.noise.spec import NoiseSpec, resolve
from hqc.quantum.execution import check_int, check_shots
from hqc.quantum.layer import QuantumLayer
from hqc.quantum.sqe import SimulatedQuantumEncoders


@dataclass
class _Program:
    """A layer's circuit compiled for the noise model, weights still free."""

    layer: QuantumLayer
    circuit: QuantumCircuit
    observables: list[SparsePauliOp]
    columns: np.ndarray  # circuit.parameters' positions among [inputs..., weights...]
    mixing: np.ndarray | None = None  # exact path: (terms, layer observables) weights


class NoisyAerValidation(Callback):
    """Logs ``val_noisy/*`` and ``test_noisy/*``: the model's splits on noisy Aer.

    Args:
        noise: a :class:`~hqc.noise.spec.NoiseSpec` (YAML mapping), a preset name
            (``ionq_aria``, ``ibm_heron``) or ``fake:<FakeBackend>`` (per-qubit calibration;
            needs shots).
        shots: shots per circuit and input (SamplerV2); None: exact noisy values (EstimatorV2).
        seed: simulator and transpiler seed; pass ``i`` simulates with ``seed + i``, so every
            pass draws fresh shots and a run is reproducible.
        method: Aer's simulation method, never left to ``automatic``.
        every_n_epochs: evaluate after every n-th validation epoch (and always at test).
        test: also evaluate the test split at ``trainer.test``.
        classical_encoders: keep the layers of
            :class:`~hqc.quantum.sqe.SimulatedQuantumEncoders` stages on their training
            execution (the paper's sQEs run classically); False sends them to noisy Aer too.
    """

    def __init__(
        self,
        noise: NoiseSpec | str,
        shots: int | None = 1024,
        seed: int = 0,
        method: Literal["density_matrix", "statevector", "matrix_product_state"] = (
            "density_matrix"
        ),
        every_n_epochs: int = 1,
        test: bool = True,
        classical_encoders: bool = True,
    ) -> None:
        check_shots(shots, "NoisyAerValidation.shots")
        check_int(seed, "NoisyAerValidation.seed")
        check_int(every_n_epochs, "NoisyAerValidation.every_n_epochs", minimum=1)
        self.noise = resolve(noise)
        if isinstance(self.noise, str) and shots is None:
            raise UserError(
                f"NoisyAerValidation: noise={self.noise!r} needs shots (a fake backend's "
                "circuits span all its qubits; exact noisy values run on a NoiseSpec)"
            )
        self.shots = shots
        self.seed = seed
        self.method = method
        self.every_n_epochs = every_n_epochs
        self.test = test
        self.classical_encoders = classical_encoders
        self.passes = 0
        self._backend: AerSimulator | None = None
        self._programs: dict[str, _Program] = {}

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Evaluate the validation split every ``every_n_epochs`` epochs (not in sanity checks)."""
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self._log_split(pl_module, trainer.val_dataloaders, "val_noisy")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Evaluate the test split."""
        if self.test:
            self._log_split(pl_module, trainer.test_dataloaders, "test_noisy")

    def _log_split(self, pl_module: LightningModule, loaders: Any, prefix: str) -> None:
        start = time.perf_counter()
        metrics = self.evaluate(pl_module, loaders if isinstance(loaders, Sequence) else [loaders])
        metrics["seconds"] = time.perf_counter() - start
        for name, value in metrics.items():
            pl_module.log(f"{prefix}/{name}", value, on_epoch=True)

    def evaluate(self, model: nn.Module, loaders: Sequence[Any]) -> dict[str, float]:
        """Loss, accuracy and macro F1 of ``model`` on ``loaders``' batches, quantum on Aer.

        ``model`` maps a batch's ``text`` to logits (a :class:`~hqc.classifier.Classifier`).
        """
        originals = self.noisy_layers(model)
        programs = {name: self.compile(name, layer) for name, layer in originals}
        self.passes += 1
        replace_quantum_layers(
            model,
            lambda name, layer: CircuitLayer(
                layer.circuit,
                layer.observables,
                layer.amplitude_encoded,
                partial(self.run, programs[name]),
            ),
            names=list(programs),
        )
        logits, labels = [], []
        try:
            with torch.no_grad():
                for loader in loaders:
                    for batch in loader:
                        logits.append(model(batch["text"]))
                        labels.append(batch["label"].to(logits[-1].device))
        finally:
            for name, layer in originals:
                model.set_submodule(name, layer)
        scores, target = torch.cat(logits).float(), torch.cat(labels)
        classes = scores.shape[1]
        return {
            "loss": float(nn.functional.cross_entropy(scores, target)),
            "acc": float(multiclass_accuracy(scores, target, classes, average="micro")),
            "f1": float(multiclass_f1_score(scores, target, classes, average="macro")),
        }

    def noisy_layers(self, model: nn.Module) -> list[tuple[str, QuantumLayer]]:
        """The quantum layers this callback runs on noisy Aer, with their module paths.

        Raises:
            UserError: none is left (every layer is in an sQE stage and ``classical_encoders``).
        """
        layers = quantum_layers(model)
        if not self.classical_encoders:
            return layers
        encoders = [
            f"{name}."
            for name, m in model.named_modules()
            if isinstance(m, SimulatedQuantumEncoders)
        ]
        noisy = [(n, layer) for n, layer in layers if not n.startswith(tuple(encoders))]
        if not noisy:
            raise UserError(
                "NoisyAerValidation: every quantum layer of the model is in a "
                "SimulatedQuantumEncoders stage, which runs classically (classical_encoders: "
                "true); set classical_encoders: false to run the sQEs on noisy Aer"
            )
        return noisy

    def run(
        self, program: _Program, _: QuantumCircuit, __: list[SparsePauliOp], values: np.ndarray
    ) -> np.ndarray:
        """Expectations ``(B, n_obs)`` of ``program`` for input rows ``values`` (a
        :data:`~hqc.export.circuit_layer.Evaluator` once ``program`` is bound)."""
        layer = program.layer
        weights = layer.weight.detach().double().cpu().numpy()
        rows = np.concatenate([values, np.broadcast_to(weights, (len(values), len(weights)))], 1)
        rows = rows[:, program.columns]
        pub = (program.circuit, rows) if rows.shape[1] else (program.circuit,)
        seed = self.seed + self.passes
        if self.shots is None:
            estimator = EstimatorV2.from_backend(
                self.backend(),
                options={"default_precision": 0.0, "run_options": {"seed_simulator": seed}},
            )
            pub = (program.circuit, [program.observables], rows[:, None, :] if rows.size else None)
            evs = estimator.run([pub]).result()[0].data.evs @ program.mixing
            return np.broadcast_to(evs, (len(values), program.mixing.shape[1]))
        sampler = SamplerV2.from_backend(self.backend(), default_shots=self.shots, seed=seed)
        bits = sampler.run([pub]).result()[0].data.meas
        out = np.stack([bits.expectation_values(op) for op in program.observables], -1)
        return np.broadcast_to(out.reshape(-1, out.shape[-1]), (len(values), out.shape[-1]))

    def backend(self) -> AerSimulator:
        """The noisy simulator, built on first use."""
        if self._backend is None:
            self._backend = simulator(self.noise, self.method, self.seed)
        return self._backend

    def compile(self, name: str, layer: QuantumLayer) -> _Program:
        """Transpile ``layer``'s circuit (weights free) to the noise basis, once per layer."""
        cached = self._programs.get(name)
        if cached is not None and cached.layer is layer:
            return cached
        circuit, inputs = layer.qiskit_circuit(bind_weights=False)
        if self.shots is None:
            isa = transpile_to_basis(circuit, self.noise, self.seed)
            observables, mixing = self._with_readout(
                [op.apply_layout(isa.layout) for op in layer.observables]
            )
        else:
            measured, observables = measured_circuit(circuit, layer.observables)
            mixing = None
            isa = transpile_to_basis(measured, self.noise, self.seed)
        order = {p: i for i, p in enumerate([*inputs, *layer.weight_params])}
        columns = np.array([order[p] for p in isa.parameters], dtype=int)
        self._programs[name] = _Program(layer, isa, observables, columns, mixing)
        return self._programs[name]

    def _with_readout(self, ops: list[SparsePauliOp]) -> tuple[list[SparsePauliOp], np.ndarray]:
        """``ops`` as read through symmetric bit flips p: their distinct Pauli terms, and the
        ``(terms, ops)`` weights in which each factor scales by 1 - 2p.

        The estimator sees unit terms (at p = 0.5 every weight is 0, and Qiskit rejects an
        observable whose coefficients are all zero); the weights apply afterwards.
        """
        assert isinstance(self.noise, NoiseSpec)  # fake backends need shots (checked above)
        labels = list(dict.fromkeys(label for op in ops for label in op.paulis.to_labels()))
        mixing = np.zeros((len(labels), len(ops)))
        for j, op in enumerate(ops):
            weight = (op.paulis.x | op.paulis.z).sum(axis=1)
            scale = op.coeffs.real * (1 - 2 * self.noise.readout_error) ** weight
            for label, value in zip(op.paulis.to_labels(), scale, strict=True):
                mixing[labels.index(label), j] += value
        return [SparsePauliOp(label) for label in labels], mixing
