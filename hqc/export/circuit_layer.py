"""A fixed, exported circuit in a QuantumLayer's place, evaluated by any Qiskit primitive.

Reloading an export and running on a backend both need the same thing: the pipeline's
classical stages as trained, with each quantum stage replaced by its bound circuit, evaluated
elsewhere (an exact statevector, a sampler on a fake or real device). :class:`CircuitLayer`
is that stand-in; :func:`replace_quantum_layers` swaps it in for every
:class:`~hqc.quantum.layer.QuantumLayer` of a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.primitives import StatevectorEstimator
from qiskit.quantum_info import SparsePauliOp
from torch import nn

from hqc.errors import UserError
from hqc.quantum.circuits import amplitude_loader_angles
from hqc.quantum.layer import QuantumLayer

#: ``evaluate(circuit, observables, values (B, n)) -> expectations (B, n_obs)``.
Evaluator = Callable[[QuantumCircuit, list[SparsePauliOp], np.ndarray], np.ndarray]


def exact_expectations(
    circuit: QuantumCircuit, observables: list[SparsePauliOp], values: np.ndarray
) -> np.ndarray:
    """Exact float64 expectations from Qiskit's reference statevector estimator, one PUB."""
    pub = (circuit, [observables], values[:, None, :] if values.shape[1] else None)
    result = StatevectorEstimator().run([pub]).result()[0]
    return np.broadcast_to(result.data.evs, (len(values), len(observables)))


def input_name(index: int) -> str:
    """Name of exported input ``index``: a plain identifier (OpenQASM 3 keeps it unchanged) whose
    lexical order is the input order, so ``circuit.parameters`` lists inputs in call order."""
    return f"in_{index:05d}"


def ordered_inputs(layer: QuantumLayer) -> QuantumCircuit:
    """``layer``'s bound circuit with its inputs renamed by :func:`input_name`, in call order."""
    circuit, inputs = layer.qiskit_circuit()
    renamed = {p: Parameter(input_name(i)) for i, p in enumerate(inputs)}
    return circuit.assign_parameters(renamed)


class CircuitLayer(nn.Module):
    """Expectations of ``observables`` after ``circuit``, whose parameters are all inputs.

    Args:
        circuit: the bound circuit; its parameters, in ``circuit.parameters`` order, are the
            inputs (with amplitude encoding the amplitude-loader angles come first).
        observables: measured observables, outputs in their order.
        amplitude_encoded: ``forward`` takes an ``initial_state`` whose loader angles lead.
        evaluate: the primitive run that computes expectations (default: exact statevector).
    """

    def __init__(
        self,
        circuit: QuantumCircuit,
        observables: Sequence[SparsePauliOp],
        amplitude_encoded: bool,
        evaluate: Evaluator = exact_expectations,
    ) -> None:
        super().__init__()
        self.circuit = circuit
        self.observables = list(observables)
        self.amplitude_encoded = amplitude_encoded
        self.evaluate = evaluate

    def forward(
        self, inputs: torch.Tensor, initial_state: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Same call as :meth:`QuantumLayer.forward`; no gradients (inference on a device)."""
        values = inputs.detach().double()
        if self.amplitude_encoded:
            angles = amplitude_loader_angles(initial_state.detach().double())
            values = torch.cat([angles, values], -1)
        out = self.evaluate(self.circuit, self.observables, values.cpu().numpy())
        return torch.as_tensor(np.array(out), dtype=inputs.dtype, device=inputs.device)


def quantum_layers(model: nn.Module) -> list[tuple[str, QuantumLayer]]:
    """Every QuantumLayer of ``model`` with its module path, in module order.

    Raises:
        UserError: the model has none (nothing to export or run on a device).
    """
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, QuantumLayer)]
    if not layers:
        raise UserError(
            f"the model ({type(model).__name__}) has no quantum stage (no QuantumLayer): "
            "export and device runs need a hybrid checkpoint (e.g. of configs/hybrid.yaml)"
        )
    return layers


#: ``on_device`` choices: the paper runs its first module (the sQEs) classically and only the
#: second (the core) on the QPU; ``all`` puts every quantum stage on the device.
ON_DEVICE = ("core", "all")


def device_layers(model: nn.Module, on_device: str = "core") -> list[tuple[str, QuantumLayer]]:
    """The quantum stages that run on a device: those of ``model.core``, or ``all`` of them.

    Raises:
        UserError: an unknown ``on_device``, or ``core`` for a model whose core is classical.
    """
    layers = quantum_layers(model)
    if on_device == "all":
        return layers
    if on_device != "core":
        raise UserError(f"--on_device {on_device!r}: use one of {list(ON_DEVICE)}")
    core = [(name, layer) for name, layer in layers if name.split(".")[0] == "core"]
    if not core:
        raise UserError(
            f"--on_device core: the model's core has no quantum stage (quantum stages: "
            f"{[name for name, _ in layers]}); pass --on_device all"
        )
    return core


def replace_quantum_layers(
    model: nn.Module,
    make: Callable[[str, QuantumLayer], nn.Module],
    names: Sequence[str] | None = None,
) -> list[str]:
    """Put ``make(name, layer)`` in place of each QuantumLayer (of ``names``, default all);
    returns the replaced paths."""
    replaced = []
    for name, layer in quantum_layers(model):
        if names is not None and name not in names:
            continue
        model.set_submodule(name, make(name, layer))
        replaced.append(name)
    return replaced
