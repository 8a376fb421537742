"""Batched torch statevector execution of Qiskit circuits, as a drop-in for TorchConnector.

``TorchConnector(EstimatorQNN(...))`` runs estimator jobs per sample and differentiates by
parameter shift, about three orders of magnitude too slow to train on. :class:`TorchQNN` compiles
the circuit once into a short list of large batched tensor operations; per-op dispatch overhead
dominates small circuits and memory traffic large ones, so the aim is few, large kernels.

Compilation (construction time):

* The circuit is flattened into 1- and 2-qubit gates; other instructions are expanded through
  their ``definition``. A rotation is written as ``A0 + cos(φ) Ac + sin(φ) As`` with constant
  matrices and ``φ`` affine in the inputs and weights, so every angle of a forward pass comes from
  one matmul ``[inputs, weights] @ A + b``.
* Each qubit's leading 1-qubit gates (e.g. a first encoding layer) act on ``|0...0>`` as a
  product state, built with a few outer products instead of gate applications.
* The other gates are fused greedily into blocks on windows of four cyclically adjacent qubits
  (16x16 is the smallest matrix a CPU GEMM handles efficiently). A block matrix is
  ``S_after @ L @ S_before``: ``S`` are products of weight-only gates (fixed gates such as CX
  folded into the rotations), built for all blocks at once by a log-depth batched product, and
  ``L`` is a per-sample Kronecker product of the block's input-dependent 1-qubit gates (identity
  for weight-only blocks). Input-dependent 2-qubit rotations are expanded into 1-qubit rotations
  and CX through their definitions. 2-qubit gates on qubits too far apart for a window get their
  own (slower) block.
* The state is a ``(batch, 2**Q)`` tensor; before a block its qubit order is cyclically rotated
  so that the window sits on the lowest bits, where the block is one ``(B * 2**(Q-4), 16) @ 16x16``
  GEMM. The observables are permuted to the final qubit order ahead of time. The evolution has a
  hand-written backward (adjoint GEMMs, inverse rotations) instead of per-op autograd nodes.
* When every gate matrix is real (CX, RY, H, CZ, ...), the simulation runs in real arithmetic.

Modules, in the order a circuit passes through them:

* :mod:`.gates`: flattening into 1- and 2-qubit gates with affine angle slots;
* :mod:`.fusion`: fusion into blocks and the rotation schedule (the op list);
* :mod:`.blocks`: the block matrices (and the product-state prefix) from the angles;
* :mod:`.kernels`: the evolution of the state through the op list, forward and backward;
* :mod:`.measure`: observables as diagonal and bit-flip tables, and their expectations;
* :mod:`.qnn`: :class:`TorchQNN`, the ``nn.Module`` that ties them together;
* :mod:`.jacobian`: per-sample Jacobians by inputs and weights (qiskit-machine-learning's
  ``NeuralNetwork`` contract) from the shared compilation.
"""

from hqc.quantum.torch_qnn.qnn import TorchQNN

__all__ = ["TorchQNN"]
