"""hqc's torch simulator as a qiskit-machine-learning ``NeuralNetwork``.

``TorchConnector(TorchQNNNetwork(...))`` is qiskit-machine-learning's own integration, with the
exact expectations and Jacobians computed by :class:`~hqc.quantum.torch_qnn.TorchQNN` in one
batched float64 pass instead of estimator jobs per sample and shift. Imported lazily (it loads
qiskit-machine-learning); :class:`~hqc.quantum.layer.QuantumLayer`'s ``torchconnector`` backend.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from qiskit import QuantumCircuit
from qiskit.circuit import Parameter
from qiskit.quantum_info import SparsePauliOp
from qiskit_machine_learning.neural_networks import NeuralNetwork

from hqc.quantum.connector import InputGradientConnector
from hqc.quantum.torch_qnn import TorchQNN


class TorchQNNNetwork(NeuralNetwork):
    """Expectations ``(B, n_obs)`` of ``observables`` after ``circuit``, with their Jacobians.

    Same arguments and output order as ``EstimatorQNN`` (exact estimator): inputs first, then
    weights. ``_backward`` returns ``(B, n_obs, num_inputs)`` (``None`` unless
    ``input_gradients``) and ``(B, n_obs, num_weights)``.

    qiskit-ml wants a weight Jacobian per sample, but :class:`TorchQNN` shares one weight
    vector over the batch. So the simulator here takes the weights as extra input columns
    (broadcast to every sample): samples stay independent, and one autograd pass per
    observable over the whole batch gives every sample's input and weight gradients.

    Attributes:
        qnn: the float64 :class:`TorchQNN`, with ``input_params + weight_params`` as inputs.
    """

    def __init__(
        self,
        circuit: QuantumCircuit,
        observables: SparsePauliOp | Sequence[SparsePauliOp],
        input_params: Sequence[Parameter] = (),
        weight_params: Sequence[Parameter] = (),
        input_gradients: bool = False,
    ) -> None:
        if isinstance(observables, SparsePauliOp):
            observables = [observables]
        observables = list(observables)
        super().__init__(
            num_inputs=len(input_params),
            num_weights=len(weight_params),
            sparse=False,
            output_shape=len(observables),
            input_gradients=input_gradients,
        )
        self.circuit = circuit
        self.qnn = TorchQNN(circuit, observables, [*input_params, *weight_params]).double()

    def _columns(self, input_data: np.ndarray | None, weights: np.ndarray | None) -> torch.Tensor:
        """``(B, num_inputs + num_weights)`` float64: each sample's inputs, then the weights."""
        inputs = torch.as_tensor(
            np.zeros((1, 0)) if input_data is None else input_data, dtype=torch.float64
        )
        weights_ = torch.as_tensor(np.zeros(0) if weights is None else weights, dtype=torch.float64)
        return torch.cat([inputs, weights_.expand(inputs.shape[0], -1)], 1)

    def _forward(self, input_data: np.ndarray | None, weights: np.ndarray | None) -> np.ndarray:
        with torch.no_grad():
            return self.qnn(self._columns(input_data, weights)).numpy()

    def _backward(
        self, input_data: np.ndarray | None, weights: np.ndarray | None
    ) -> tuple[np.ndarray | None, np.ndarray]:
        columns = self._columns(input_data, weights).requires_grad_()
        with torch.enable_grad():
            out = self.qnn(columns)
            n_obs = out.shape[1]
            jacobian = torch.stack(
                [
                    torch.autograd.grad(out[:, k].sum(), columns, retain_graph=k < n_obs - 1)[0]
                    for k in range(n_obs)
                ],
                1,
            ).numpy()
        input_grad = jacobian[..., : self.num_inputs] if self.input_gradients else None
        return input_grad, jacobian[..., self.num_inputs :]


class TorchQNNConnector(InputGradientConnector):
    """``TorchConnector(TorchQNNNetwork(...))`` asking for input gradients only when needed."""

    def __init__(
        self,
        circuit: QuantumCircuit,
        observables: Sequence[SparsePauliOp],
        input_params: Sequence[Parameter],
        weight_params: Sequence[Parameter],
        initial_weights: torch.Tensor,
    ) -> None:
        super().__init__(
            TorchQNNNetwork(circuit, observables, input_params, weight_params), initial_weights
        )
