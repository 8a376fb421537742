"""A small typed noise setting: published error rates, coherence times, and named presets.

A :class:`NoiseSpec` holds the numbers a device's data sheet publishes — error *rates*
``r = 1 - fidelity`` of 1- and 2-qubit gates and of readout, T1/T2 and gate times — not the
parameters of Aer's channels; :mod:`hqc.noise.aer` converts them (``depolarizing_error`` takes
λ = 2r for one qubit and 4r/3 for two). Presets are the ``noise:`` mapping of
``configs/noise/<name>.yaml``, a CLI config fragment that also sets shots and the noisy
validation callback, with each number's public source beside it. ``fake:<FakeBackend>`` names a
``qiskit_ibm_runtime.fake_provider`` backend whose calibration snapshot Aer uses as it is
(optional ``noise`` extra).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hqc.errors import UserError

#: Where the named presets live: ``configs/noise/<name>.yaml`` in the hqc checkout.
PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "noise"
FAKE_PREFIX = "fake:"
# Largest error rate a depolarising channel can have: λ ≤ d²/(d²-1) and r = λ(d-1)/d.
_MAX_RATE = {1: 2 / 3, 2: 4 / 5}
#: Gates whose free (unbound) angle qiskit-aer 0.18's primitives ignore (see ``hqc.noise.aer``).
AER_UNBOUND_BROKEN = frozenset({"cp", "crx", "cry", "crz", "cu1", "cu3"})


@dataclass(frozen=True)
class NoiseSpec:
    """Gate, readout and relaxation noise as published error rates (seconds for times).

    Args:
        gate_error_1q: error rate r (1 - average gate fidelity) of every 1-qubit basis gate.
        gate_error_2q: error rate of every 2-qubit basis gate.
        readout_error: probability that a measured bit flips (symmetric; 1 - SPAM fidelity).
        t1: amplitude damping time T1 in seconds; None: no thermal relaxation.
        t2: dephasing time T2 in seconds (T2 ≤ 2·T1); given together with ``t1``.
        gate_time_1q: duration of a 1-qubit gate in seconds (relaxation acts for this long).
        gate_time_2q: duration of a 2-qubit gate in seconds.
        basis_gates: the gates circuits are transpiled to; errors attach to these by name.
        virtual_gates: basis gates done in software as frame changes (``rz`` on IBM and IonQ
            devices): no error, no duration. Calibrations list them with error 0.

    With T1/T2 set, a gate is a depolarising channel followed by thermal relaxation whose
    combined error rate is still ``r`` (the depolarising part is reduced by what relaxation
    explains), as ``NoiseModel.from_backend`` does: a published rate already includes decoherence.
    """

    gate_error_1q: float = 0.0
    gate_error_2q: float = 0.0
    readout_error: float = 0.0
    t1: float | None = None
    t2: float | None = None
    gate_time_1q: float = 0.0
    gate_time_2q: float = 0.0
    basis_gates: tuple[str, ...] = ("rx", "ry", "rz", "cx")
    virtual_gates: tuple[str, ...] = ("rz",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "basis_gates", tuple(self.basis_gates))
        object.__setattr__(self, "virtual_gates", tuple(self.virtual_gates))
        for name, qubits in (("gate_error_1q", 1), ("gate_error_2q", 2)):
            rate = _number(self, name)
            if not 0.0 <= rate <= _MAX_RATE[qubits]:
                raise UserError(
                    f"noise.{name}={rate} is not an error rate in [0, {_MAX_RATE[qubits]:.3g}] "
                    f"(1 - fidelity; {_MAX_RATE[qubits]:.3g} is a fully depolarising "
                    f"{qubits}-qubit gate)"
                )
        readout = _number(self, "readout_error")
        if not 0.0 <= readout <= 1.0:
            raise UserError(f"noise.readout_error={readout} is not a probability in [0, 1]")
        for name in ("gate_time_1q", "gate_time_2q"):
            if _number(self, name) < 0:
                raise UserError(f"noise.{name}={getattr(self, name)} must be >= 0 (seconds)")
        if (self.t1 is None) != (self.t2 is None):
            raise UserError("noise.t1 and noise.t2 go together: set both (seconds) or neither")
        if self.t1 is not None:
            t1, t2 = _number(self, "t1"), _number(self, "t2")
            if t1 <= 0 or t2 <= 0:
                raise UserError(f"noise.t1={t1} and noise.t2={t2} must be > 0 (seconds)")
            if t2 > 2 * t1:
                raise UserError(f"noise.t2={t2} > 2·t1={2 * t1}: no physical qubit has T2 > 2·T1")
        if not self.basis_gates:
            raise UserError("noise.basis_gates is empty: list the gates circuits run as")
        broken = sorted(AER_UNBOUND_BROKEN.intersection(self.basis_gates))
        if broken:
            raise UserError(
                f"noise.basis_gates {broken}: qiskit-aer ignores the angle of a parametrised "
                "controlled rotation, so a circuit transpiled to them would run wrong values; "
                "use rx/ry/rz/sx/x with cx, cz or ecr"
            )
        stray = [g for g in self.virtual_gates if g not in self.basis_gates]
        if stray:
            raise UserError(
                f"noise.virtual_gates {stray} are not in noise.basis_gates {list(self.basis_gates)}"
            )

    @property
    def relaxation(self) -> bool:
        """Whether T1/T2 thermal relaxation is part of the model."""
        return self.t1 is not None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "noise") -> NoiseSpec:
        """A spec from a YAML mapping; an unknown key is a UserError naming it and ``where``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise UserError(f"{where}: unknown noise setting(s) {unknown}; known: {sorted(names)}")
        return cls(**values)


def _number(spec: NoiseSpec, name: str) -> float:
    value = getattr(spec, name)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise UserError(f"noise.{name}={value!r} is not a number")
    return float(value)


def presets() -> list[str]:
    """Names of the presets in ``configs/noise/`` (each file with a ``noise:`` mapping)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml") if _find_noise(_read(p)) is not None)


def load_preset(name: str) -> NoiseSpec:
    """The ``noise:`` mapping of ``configs/noise/<name>.yaml`` (or of a ``.yaml`` path)."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UserError(
            f"noise={name!r}: no such preset (known: {presets()}; or fake:<FakeBackend>, "
            "or a path to a .yaml file with a noise: mapping)"
        )
    values = _find_noise(_read(path))
    if values is None:
        raise UserError(f"{path}: no `noise:` mapping of noise settings in this file")
    return NoiseSpec.from_mapping(values, where=str(path))


def resolve(noise: NoiseSpec | Mapping[str, Any] | str) -> NoiseSpec | str:
    """A spec for a spec, mapping or preset name; a checked ``fake:<Name>`` string stays a name.

    Raises:
        UserError: an unknown preset or fake backend, or an invalid setting.
    """
    if isinstance(noise, NoiseSpec):
        return noise
    if isinstance(noise, Mapping):
        return NoiseSpec.from_mapping(noise)
    if noise.startswith(FAKE_PREFIX):
        fake_backend(noise)
        return noise
    return load_preset(noise)


def fake_backend(name: str) -> Any:
    """The ``qiskit_ibm_runtime.fake_provider`` backend ``fake:<Name>`` names (e.g. fake:FakeFez).

    Raises:
        UserError: the package is missing or has no such fake backend.
    """
    backend_name = name.removeprefix(FAKE_PREFIX)
    try:
        from qiskit_ibm_runtime import fake_provider
    except ImportError as error:
        raise UserError(
            f"noise={name!r} needs qiskit-ibm-runtime: pip install 'hqc[noise]'"
        ) from error
    backend_class = getattr(fake_provider, backend_name, None)
    if not (isinstance(backend_class, type) and backend_name.startswith("Fake")):
        known = [n for n in dir(fake_provider) if n.startswith("Fake") and n[4:5].isupper()]
        raise UserError(
            f"noise={name!r}: qiskit_ibm_runtime.fake_provider has no backend {backend_name!r} "
            f"(e.g. {', '.join(known[:6])}, ...)"
        )
    return backend_class()


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"{path}: cannot read the noise preset: {error}") from error


def _find_noise(node: Any) -> Mapping[str, Any] | None:
    """The first ``noise:`` mapping anywhere in a parsed YAML document, depth first."""
    if isinstance(node, Mapping):
        if isinstance(node.get("noise"), Mapping):
            return node["noise"]
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _find_noise(child)
        if found is not None:
            return found
    return None
