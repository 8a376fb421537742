"""The ``TorchConnector`` both Qiskit-facing backends share (``qiskit``, ``torchconnector``).

Imported lazily with them: it loads qiskit-machine-learning.
"""

from __future__ import annotations

import torch
from qiskit_machine_learning.connectors import TorchConnector
from qiskit_machine_learning.neural_networks import NeuralNetwork


class InputGradientConnector(TorchConnector):
    """``TorchConnector`` asking ``network`` for input gradients only when autograd needs them.

    qiskit-ml networks skip input gradients unless ``input_gradients`` is set, and computing them
    when nothing upstream trains costs a Jacobian column per input. ``TorchConnector`` hard-codes
    float32, so ``weight`` is float32 and outputs carry float32 precision.

    Attributes:
        qnn: the wrapped network: its float64 ``forward``/``backward`` are the reference values.
    """

    def __init__(self, network: NeuralNetwork, initial_weights: torch.Tensor) -> None:
        super().__init__(network, initial_weights=initial_weights.detach().cpu().double().numpy())
        self.qnn = network

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Expectations for ``inputs`` ``(B, n_in)``, float32."""
        self.qnn.input_gradients = inputs.requires_grad
        return super().forward(inputs)
