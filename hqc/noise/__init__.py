"""Noise for quantum stages: a typed spec with presets, its qiskit-aer model, noisy validation.

:class:`NoiseSpec` (``hqc.noise.spec``) holds published rates; ``hqc.noise.aer`` turns them
into Aer channels; :class:`NoisyAerValidation` (``hqc.noise.validation``) evaluates a model's
validation and test splits on noisy Aer during ``fit``. The callback is imported on first use:
it needs the export helpers, which import the quantum layer, which imports the spec.
"""

from typing import Any

from hqc.noise.spec import NoiseSpec

__all__ = ["NoiseSpec", "NoisyAerValidation"]


def __getattr__(name: str) -> Any:
    if name == "NoisyAerValidation":
        from hqc.noise.validation import NoisyAerValidation

        return NoisyAerValidation
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
