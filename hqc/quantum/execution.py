"""How quantum stages execute: exact, with finite shots, and/or under gate noise.

One setting for the whole model (``model.init_args.execution`` in YAML): the
:class:`~hqc.classifier.Classifier` hands it to every
:class:`~hqc.quantum.layer.QuantumLayer` among its stages, a user's own stage included, so
shots and noise are never arguments repeated on each stage.
"""

from __future__ import annotations

from dataclasses import dataclass

from hqc.errors import UserError
from hqc.noise.spec import NoiseSpec, resolve


@dataclass(frozen=True)
class Execution:
    """Shots, seed and noise of every quantum layer.

    Args:
        shots: None: exact expectations; k: each expectation is estimated from k measurements
            (:mod:`hqc.quantum.shots`, straight-through gradients), in training and evaluation.
        seed: seed of the shot generator (each layer draws its own fresh shots per call).
        noise: None: noiseless; a :class:`~hqc.noise.spec.NoiseSpec`, its YAML mapping or a
            preset name (``ionq_aria``): the layer simulates density matrices under that
            noise in torch (:mod:`hqc.quantum.density`), with gradients. ``fake:<Backend>``
            calibrations are per physical qubit and only for Aer
            (:class:`~hqc.noise.NoisyAerValidation`).
    """

    shots: int | None = None
    seed: int = 0
    noise: NoiseSpec | str | None = None

    def __post_init__(self) -> None:
        check_shots(self.shots, "execution.shots")
        check_int(self.seed, "execution.seed")
        if self.noise is None:
            return
        noise = resolve(self.noise)
        if isinstance(noise, str):
            raise UserError(
                f"execution.noise={noise!r}: a fake backend's calibration is per physical qubit "
                "and runs on Aer only; train under a NoiseSpec or preset (e.g. ibm_heron) and "
                "validate on the fake backend with hqc.noise.NoisyAerValidation"
            )
        object.__setattr__(self, "noise", noise)

    @property
    def exact(self) -> bool:
        """No shots and no noise: the layer's plain exact simulation."""
        return self.shots is None and self.noise is None


def check_int(value: object, setting: str, minimum: int | None = None) -> None:
    """Raise a UserError naming ``setting`` unless ``value`` is an int (≥ ``minimum``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{setting}={value!r} must be an integer")
    if minimum is not None and value < minimum:
        raise UserError(f"{setting}={value!r} must be >= {minimum}")


def check_shots(shots: object, setting: str) -> None:
    """Raise a UserError naming ``setting`` unless ``shots`` is None (exact) or ≥ 1."""
    if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 1):
        raise UserError(f"{setting}={shots!r} must be a positive integer (or null: exact)")
