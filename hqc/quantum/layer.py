"""One ``nn.Module`` for a parametrised circuit, simulated by torch or by Qiskit primitives.

Both backends take the same circuit, observables and initial weights and return the same
expectations in the same order, so a result from the fast torch simulator can be checked
against Qiskit's reference stack (``EstimatorQNN`` + ``TorchConnector``) by flipping one flag.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp
from torch import nn

from hqc.errors import UserError
from hqc.quantum.circuits import amplitude_loader, amplitude_loader_angles
from hqc.quantum.execution import Execution
from hqc.quantum.shots import ShotSampler
from hqc.quantum.torch_qnn import TorchQNN

if TYPE_CHECKING:
    from qiskit_machine_learning.neural_networks import NeuralNetwork

Backend = Literal["torch", "qiskit", "torchconnector"]
BACKENDS = get_args(Backend)


class QuantumLayer(nn.Module):
    """Expectations ``(B, n_obs)`` of ``observables`` after ``circuit``, differentiable.

    Args:
        circuit: the parametrised circuit.
        observables: one or more observables; outputs follow their order.
        input_params: circuit parameters fed from ``forward``'s ``inputs`` columns, in order.
        weight_params: trainable circuit parameters, in the order of :attr:`weight`.
        backend: ``torch`` (:class:`~hqc.quantum.torch_qnn.TorchQNN`, exact, fast) or ``qiskit``
            (``EstimatorQNN`` on an exact statevector estimator with parameter-shift gradients,
            wrapped by ``TorchConnector``; slow, for cross-checks and later shot/noise studies;
            :mod:`hqc.quantum.qiskit_backend`, imported only for this backend), or
            ``torchconnector`` (``TorchConnector`` over
            :class:`~hqc.quantum.torch_network.TorchQNNNetwork`: qiskit-machine-learning's
            integration at torch speed, float32 like ``qiskit``; amplitude loader as ``qiskit``).
        initial_weights: starting weights; by default uniform in [-π, π) from torch's global
            generator, drawn here in float64 so that both backends, and float32 and float64
            modules, start from the same point under one seed.
        amplitude_encoded: the circuit starts from a state given per sample as ``forward``'s
            ``initial_state`` (amplitude encoding) instead of |0…0⟩. The torch backend takes the
            amplitudes directly; the Qiskit backend prepends
            :func:`~hqc.quantum.circuits.amplitude_loader`, an R_Y/CX circuit whose angles are
            computed from the amplitudes in torch, so gradients reach them on both backends.

    The Qiskit backend computes in float64 but ``TorchConnector`` hands back float32 values and
    gradients (it hard-codes ``torch.float``); outputs are cast to :attr:`weight`'s dtype so the
    layer fits a ``.double()`` model, but they carry float32 precision (about 1e-7).

    Attributes:
        circuit: the circuit as given (draw it); ``qiskit_circuit(bind_weights=False)`` shows
            it with the amplitude loader in front.
    """

    def __init__(
        self,
        circuit: QuantumCircuit,
        observables: SparsePauliOp | Sequence[SparsePauliOp],
        input_params: Sequence[Parameter] = (),
        weight_params: Sequence[Parameter] = (),
        backend: Backend = "torch",
        initial_weights: torch.Tensor | None = None,
        amplitude_encoded: bool = False,
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
        if isinstance(observables, SparsePauliOp):
            observables = [observables]
        if initial_weights is None:
            initial_weights = torch.empty(len(weight_params), dtype=torch.float64)
            initial_weights = initial_weights.uniform_(-math.pi, math.pi)
        self.backend = backend
        self.circuit = circuit
        self.observables = list(observables)
        self.amplitude_encoded = amplitude_encoded
        self.input_params = list(input_params)
        self.weight_params = list(weight_params)
        self.net: nn.Module
        self.execution = Execution()
        self.sampler: ShotSampler | None = None
        if backend == "torch":
            self.net = TorchQNN(
                circuit, self.observables, input_params, weight_params, initial_weights
            )
            return
        if backend == "qiskit":
            from hqc.quantum.qiskit_backend import QiskitQNN as Connector
        else:
            from hqc.quantum.torch_network import TorchQNNConnector as Connector

        program, inputs = self.qiskit_circuit(bind_weights=False)
        self.net = Connector(program, self.observables, inputs, self.weight_params, initial_weights)

    @property
    def qnn(self) -> NeuralNetwork | None:
        """The connector's float64 ``NeuralNetwork`` (``EstimatorQNN``, ``TorchQNNNetwork``)."""
        return getattr(self.net, "qnn", None)

    def set_execution(self, execution: Execution, stream: int = 0) -> None:
        """Run with ``execution``'s shots and noise from now on (the Classifier calls this).

        ``stream`` gives each layer of a model its own shot generator under one seed. Noise
        swaps :attr:`net` for a :class:`~hqc.quantum.density.DensityQNN` (torch density
        matrices, autograd) holding the current weights, and back to :class:`TorchQNN`
        without noise; the weights stay ``net.weight``, so checkpoints load either way.

        Raises:
            UserError: shots with a multi-term observable, or noise on the Qiskit backend.
        """
        seed = int(np.random.SeedSequence([execution.seed, stream]).generate_state(1)[0])
        shots = execution.shots
        self.sampler = None if shots is None else ShotSampler(self.observables, shots, seed)
        if execution.noise != self.execution.noise:
            if self.qnn is not None:
                raise UserError(
                    "execution.noise trains on hqc's torch density-matrix path: set the "
                    "quantum stages' backend: torch"
                )
            weights = self.weight.detach().clone()
            if execution.noise is None:
                self.net = TorchQNN(
                    self.circuit, self.observables, self.input_params, self.weight_params, weights
                )
            else:
                from hqc.quantum.density import DensityQNN

                self.net = DensityQNN(
                    self.circuit,
                    self.observables,
                    self.input_params,
                    self.weight_params,
                    noise=execution.noise,
                    initial_weights=weights,
                )
            # the layer's device and real dtype (a float64 model stays so); not .to(dtype),
            # which would also cast a DensityQNN's complex superoperators to real, dropping
            # their imaginary parts (bases with sx or rx)
            self.net.to(weights.device)
            if weights.dtype == torch.float64:
                self.net.double()
            with torch.no_grad():  # exactly: a constructor may round them to float32
                self.net.weight.copy_(weights)
        self.execution = execution

    def qiskit_circuit(self, bind_weights: bool = True) -> tuple[QuantumCircuit, list[Parameter]]:
        """The circuit with the current weights bound, and its free input parameters in order.

        With amplitude encoding the :func:`~hqc.quantum.circuits.amplitude_loader` comes first
        and its angles lead the inputs; :meth:`qiskit_inputs` computes their values. This is
        what runs elsewhere: a noisy Aer simulation, an export, a hardware backend. With
        ``bind_weights=False`` the weights stay free (``weight_params``): compile once, bind
        new weights per run.
        """
        circuit, inputs = self.circuit, list(self.input_params)
        if self.amplitude_encoded:
            loader, angles = amplitude_loader(circuit.num_qubits)
            circuit, inputs = loader.compose(circuit), [*angles, *inputs]
        if not bind_weights:
            return circuit, inputs
        values = self.weight.detach().double().cpu().tolist()
        bound = circuit.assign_parameters(dict(zip(self.weight_params, values, strict=True)))
        return bound, inputs

    def qiskit_inputs(
        self, inputs: torch.Tensor, initial_state: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Values ``(B, n)`` of :meth:`qiskit_circuit`'s input parameters, float64."""
        inputs = inputs.double()
        if self.amplitude_encoded:
            if initial_state is None:
                raise ValueError("an amplitude-encoded layer needs its initial_state")
            return torch.cat([amplitude_loader_angles(initial_state.double()), inputs], -1)
        return inputs

    @property
    def weight(self) -> nn.Parameter:
        """The trainable circuit weights, ordered like ``weight_params``."""
        return self.net.weight

    def forward(
        self, inputs: torch.Tensor, initial_state: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Expectations for ``inputs`` ``(B, n_in)`` (``(B, 0)`` when the circuit has none).

        Args:
            inputs: values of ``input_params`` per sample.
            initial_state: ``(B, 2^Q)`` real, normalised amplitudes; required exactly when the
                layer is ``amplitude_encoded``.
        """
        if (initial_state is not None) != self.amplitude_encoded:
            raise ValueError(
                "initial_state must be given exactly when the layer is amplitude_encoded "
                f"(amplitude_encoded={self.amplitude_encoded})"
            )
        out = self._exact(inputs, initial_state)
        return out if self.sampler is None else self.sampler(out)

    def _exact(self, inputs: torch.Tensor, initial_state: torch.Tensor | None) -> torch.Tensor:
        """Exact expectations through the chosen backend, in :attr:`weight`'s dtype."""
        if self.backend == "torch":
            return self.net(inputs, initial_state)
        if inputs.shape[0] == 0:  # Aer crashes (SIGSEGV) on an empty PUB; nothing to estimate
            touch = 0 * (self.weight.sum() + inputs.sum())  # zero gradients, as the torch backend
            return touch.to(self.weight.dtype).expand(0, len(self.observables))
        if initial_state is not None:
            inputs = self.qiskit_inputs(inputs, initial_state)
        return self.net(inputs).to(self.weight.dtype)
