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
from hqc.quantum.torch_qnn.jacobian import jacobians


class TorchQNNNetwork(NeuralNetwork):
    """Expectations ``(B, n_obs)`` of ``observables`` after ``circuit``, with their Jacobians.

    Same arguments and output order as ``EstimatorQNN`` (exact estimator): inputs first, then
    weights. ``_backward`` returns ``(B, n_obs, num_inputs)`` (``None`` unless
    ``input_gradients``) and ``(B, n_obs, num_weights)``.

    qiskit-ml wants a weight Jacobian per sample, but :class:`TorchQNN` shares one weight
    vector over the batch (weight-only gates fuse into shared block matrices). ``_backward``
    keeps the shared compilation and takes the per-sample cotangents of those matrices
    (:func:`~hqc.quantum.torch_qnn.jacobian.jacobians`): one forward and one backward per
    observable, instead of building every block per sample.

    Attributes:
        qnn: the float64 :class:`TorchQNN`, weights bound per call.
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
        self.qnn = TorchQNN(circuit, observables, input_params, weight_params).double()

    @staticmethod
    def _tensors(
        input_data: np.ndarray | None, weights: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, num_inputs)`` inputs and ``(num_weights,)`` weights, float64."""
        inputs = torch.as_tensor(
            np.zeros((1, 0)) if input_data is None else input_data, dtype=torch.float64
        )
        weights_ = np.zeros(0) if weights is None else weights
        return inputs, torch.as_tensor(weights_, dtype=torch.float64)

    def _bind(self, input_data: np.ndarray | None, weights: np.ndarray | None) -> torch.Tensor:
        """The inputs as a tensor, with ``weights`` bound to :attr:`qnn`."""
        inputs, weights_ = self._tensors(input_data, weights)
        with torch.no_grad():
            self.qnn.weight.copy_(weights_)
        return inputs

    def _forward(self, input_data: np.ndarray | None, weights: np.ndarray | None) -> np.ndarray:
        inputs = self._bind(input_data, weights)
        with torch.no_grad():
            return self.qnn(inputs).numpy()

    def _backward(
        self, input_data: np.ndarray | None, weights: np.ndarray | None
    ) -> tuple[np.ndarray | None, np.ndarray]:
        jacobian = jacobians(self.qnn, self._bind(input_data, weights))[1].numpy()
        input_grad = jacobian[..., : self.num_inputs] if self.input_gradients else None
        return input_grad, jacobian[..., self.num_inputs :]


class TorchQNNConnector(InputGradientConnector):
    """``TorchConnector(TorchQNNNetwork(...))`` asking for input gradients only when needed.

    ``parallel_batch``: its per-sample Jacobian GEMMs scale with threads (unlike the torch
    backend's small shared ones), so ``--threads auto`` gives the fit its share of the cores
    (:mod:`hqc.threads`).
    """

    parallel_batch = True

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
