"""Finite-shot estimates of Pauli expectations that still pass exact gradients.

A Pauli string P has outcomes ±1 in its eigenbasis, so after a circuit with exact expectation
μ = ⟨P⟩ the number k of +1 outcomes among ``shots`` measurements is exactly
Binomial(shots, (1 + μ)/2), and ``2k/shots - 1`` is the shot estimate. Drawing k directly is
the exact marginal of sampling bit strings from the basis distribution and averaging, for any
single Pauli string (X/Y included: a device rotates into its eigenbasis first), at the cost of
one batched ``torch.binomial`` call.

What is *not* modelled: a device measuring commuting observables from the same shots gets
correlated estimates; here each observable is drawn independently. Per-observable statistics
(mean, variance) are exact. An observable with several Pauli terms would need its terms'
joint distribution and is refused.

Gradients are straight-through: the forward value is the shot estimate and the backward pass
is the exact value's gradient, ``μ + (estimate - μ).detach()``. The estimate is unbiased,
E[estimate] = μ, but a nonlinear loss of it is not: E[loss(estimate)] ≠ loss(μ) (for
cross-entropy the shot noise raises the expected loss), and the gradient used is that of the
exact loss surrogate at the sampled point, not the gradient of E[loss(estimate)].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from qiskit.quantum_info import SparsePauliOp

from hqc.errors import UserError


def pauli_coefficients(observables: Sequence[SparsePauliOp]) -> list[tuple[float, bool]]:
    """``(c, is_identity)`` of each observable ``c·P``, P a single Pauli string.

    Raises:
        UserError: an observable with several terms or a complex coefficient.
    """
    out = []
    for index, op in enumerate(observables):
        op = op.simplify()
        coeff = complex(op.coeffs[0]) if len(op) else 0.0
        if len(op) != 1 or abs(coeff.imag) > 1e-12:
            raise UserError(
                f"shots: observable {index} ({op.paulis.to_labels()}) is not one real-weighted "
                "Pauli string; finite shots support single Pauli strings only (measure each "
                "term as its own observable)"
            )
        out.append((coeff.real, not (op.paulis.x.any() or op.paulis.z.any())))
    return out


class ShotSampler:
    """Replaces exact expectations by ``shots``-shot estimates, seeded, straight-through.

    Args:
        observables: the layer's observables, each a single Pauli string (see module doc).
        shots: measurements per circuit and observable.
        seed: the generator's seed; each call advances it, so a run is reproducible under one
            seed and every step draws fresh shots. The generator state is not checkpointed: a
            resumed run draws different (equally distributed) shots.
    """

    def __init__(self, observables: Sequence[SparsePauliOp], shots: int, seed: int = 0) -> None:
        terms = pauli_coefficients(observables)
        self.shots = shots
        self.seed = seed
        self.coeffs = [c for c, _ in terms]
        self.identity = [i for _, i in terms]
        self._generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def __call__(self, exact: torch.Tensor) -> torch.Tensor:
        """Shot estimates ``(B, n_obs)`` with the gradient of ``exact`` ``(B, n_obs)``."""
        coeffs = exact.new_tensor(self.coeffs)
        mean = torch.where(coeffs != 0, exact.detach() / coeffs.where(coeffs != 0, 1.0), 0.0)
        p_plus = ((1 + mean) / 2).clamp(0.0, 1.0)
        count = torch.full_like(p_plus, float(self.shots))
        plus = torch.binomial(count, p_plus, generator=self._generator(exact.device))
        estimate = coeffs * (2 * plus / self.shots - 1)
        estimate = torch.where(exact.new_tensor(self.identity, dtype=torch.bool), coeffs, estimate)
        return exact + (estimate - exact).detach()
