"""Device targets to transpile to: a trapped-ion-class and a superconducting-class device.

``all_to_all`` (trapped-ion class): every qubit pair coupled, with IonQ Aria's published rates
and gate times as instruction properties, so resource estimates read every device the same way,
from its :class:`~qiskit.transpiler.Target`. With ``qiskit-ionq`` installed (``hardware``
extra) its gates are IonQ's native GPI/GPI2/MS and circuits are compiled by IonQ's own
``TrappedIonOptimizerPlugin`` (Qiskit's preset passes, then IonQ's native rewrite rules; on
bound circuits only, see :meth:`DeviceTarget.pass_manager`);
without it, or by the name ``all_to_all_generic``, they are RZ (a free frame change)/RX/RXX (the
MS gate is an XX rotation). ``heavy_hex`` (superconducting class): ``qiskit_ibm_runtime``'s
``FakeFez`` (156-qubit Heron r2 heavy-hex with its calibration snapshot) when that package is
installed, else a ``GenericBackendV2`` on a heavy-hex coupling map with CZ/RZ/SX/X
(``heavy_hex_generic`` names it whatever is installed). ``fake:<Name>`` is any
``qiskit_ibm_runtime.fake_provider`` backend (e.g. ``fake:FakeTorino``), and any other name is a
class path of a ``Target`` or ``BackendV2`` (or a zero-argument callable returning one).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

from qiskit.circuit import Gate, Parameter
from qiskit.circuit.library import Measure, RXGate, RXXGate, RZGate
from qiskit.providers import BackendV2
from qiskit.providers.fake_provider import GenericBackendV2
from qiskit.transpiler import CouplingMap, InstructionProperties, PassManager, Target
from qiskit.transpiler.passmanager_config import PassManagerConfig
from qiskit.transpiler.preset_passmanagers import generate_preset_pass_manager

from hqc.errors import UserError
from hqc.noise.spec import FAKE_PREFIX, fake_backend

#: One target per device class; ``python -m hqc.export`` reports and plots these by default.
BUILTIN_TARGETS = ("all_to_all", "heavy_hex")
#: Other names :func:`resolve_target` knows, for its error message.
OTHER_TARGETS = (
    "all_to_all_generic",
    "heavy_hex_generic",
    f"{FAKE_PREFIX}<FakeBackend>",
    "a.class.Path",
)

#: Trapped-ion constants, IonQ Aria, "System timing" / "System fidelity" tables of
#: https://learn.microsoft.com/azure/quantum/provider-ionq (MicrosoftDocs/quantum-docs,
#: articles/provider-ionq.md): 1q gate 135 µs, 2q gate 600 µs, 1q fidelity 99.95 %,
#: 2q fidelity 99.6 %, SPAM 99.61 %. Aria's readout time is not listed there; readout 100 µs is
#: the same page's figure for IonQ Harmony (the previous generation).
ION = {
    "qubits": 25,
    "t_1q": 135e-6,
    "t_2q": 600e-6,
    "t_readout": 100e-6,
    "error_1q": 1 - 0.9995,
    "error_2q": 1 - 0.996,
    "error_readout": 1 - 0.9961,
}
#: Heavy-hex distance of the generic fallback: (5d² - 2d - 1)/2 = 115 qubits at d = 7.
HEAVY_HEX_DISTANCE = 7


@dataclass(frozen=True)
class DeviceTarget:
    """A named transpilation target; ``backend`` is set where the target can also run circuits.

    ``compiler``: ``"qiskit"`` (Qiskit's preset pass manager) or ``"ionq"`` (IonQ's
    ``TrappedIonOptimizerPlugin``, for a target of IonQ-native gates).
    """

    name: str
    target: Target
    backend: BackendV2 | None = None
    compiler: str = "qiskit"

    def pass_manager(
        self, optimization_level: int = 1, seed: int = 0, parametric: bool = False
    ) -> PassManager:
        """The pass manager that compiles circuits for this device.

        ``parametric``: the circuit has free parameters (an exported stage's inputs); IonQ's
        rewrite rules compare bound angles only, so such circuits get Qiskit's preset passes
        (with qiskit-ionq's equivalences) alone, which leaves more GPI/GPI2 gates.
        """
        if self.compiler == "ionq" and not parametric:
            from qiskit_ionq import TrappedIonOptimizerPlugin

            config = PassManagerConfig(target=self.target, seed_transpiler=seed)
            return TrappedIonOptimizerPlugin().pass_manager(config, optimization_level)
        return generate_preset_pass_manager(
            optimization_level, target=self.target, seed_transpiler=seed
        )


def _ion_target(num_qubits: int, description: str, one_q: list[Gate], two_q: Gate) -> Target:
    """All pairs coupled: ``one_q`` and ``two_q`` gates and measure, IonQ Aria's properties."""
    target = Target(num_qubits=num_qubits, description=description)
    one = {(q,): InstructionProperties(ION["t_1q"], ION["error_1q"]) for q in range(num_qubits)}
    for gate in one_q:
        target.add_instruction(gate, one)
    pairs = {
        (a, b): InstructionProperties(ION["t_2q"], ION["error_2q"])
        for a in range(num_qubits)
        for b in range(num_qubits)
        if a != b
    }
    target.add_instruction(two_q, pairs)
    readout = InstructionProperties(ION["t_readout"], ION["error_readout"])
    target.add_instruction(Measure(), {(q,): readout for q in range(num_qubits)})
    return target


def all_to_all_target(num_qubits: int = ION["qubits"]) -> Target:
    """Trapped-ion-class target without qiskit-ionq: RZ (free) / RX / RXX, IonQ Aria's rates."""
    target = _ion_target(
        num_qubits,
        "all-to-all RZ/RX/RXX (IonQ Aria rates)",
        [RXGate(Parameter("θ"))],
        RXXGate(Parameter("θ")),
    )
    # RZ is a frame change on trapped ions (zero duration, no error), as on superconducting qubits.
    target.add_instruction(
        RZGate(Parameter("λ")), {(q,): InstructionProperties(0.0, 0.0) for q in range(num_qubits)}
    )
    return target


def ionq_native_target(num_qubits: int = ION["qubits"]) -> Target:
    """IonQ's native GPI/GPI2 and MS gates on all pairs, IonQ Aria's rates and times.

    Registers qiskit-ionq's equivalences (U and CX in GPI/GPI2/MS) in Qiskit's session library,
    as its own backends do, so the basis translator can reach these gates.

    Raises:
        ImportError: qiskit-ionq is not installed (``pip install 'hqc[hardware]'``).
    """
    from qiskit_ionq import GPI2Gate, GPIGate, MSGate

    _ionq_equivalences()
    phases = [Parameter(name) for name in ("φ0", "φ1", "θ")]
    return _ion_target(
        num_qubits,
        "all-to-all IonQ native GPI/GPI2/MS (IonQ Aria rates)",
        [GPIGate(Parameter("φ")), GPI2Gate(Parameter("φ"))],
        MSGate(*phases),
    )


@cache
def _ionq_equivalences() -> None:
    """qiskit-ionq's equivalences, added once per process (each call appends them again)."""
    from qiskit_ionq import add_equivalences

    add_equivalences()


def trapped_ion_device(generic: bool = False) -> DeviceTarget:
    """``all_to_all``: IonQ-native (qiskit-ionq installed, not ``generic``), else RZ/RX/RXX."""
    if not generic:
        try:
            return DeviceTarget("all_to_all (ionq_native)", ionq_native_target(), compiler="ionq")
        except ImportError:
            pass
    return DeviceTarget("all_to_all (rz_rx_rxx)", all_to_all_target())


def generic_superconducting(coupling_map: CouplingMap) -> BackendV2:
    """A ``GenericBackendV2`` with Heron's native CZ/RZ/SX/X on ``coupling_map``.

    Its error rates and durations are Qiskit's generic (seeded) ones, and it runs circuits on Aer
    under the matching noise model: a superconducting-class device without any extra package.
    """
    return GenericBackendV2(
        num_qubits=coupling_map.size(),
        basis_gates=["cz", "rz", "sx", "x", "id"],
        coupling_map=coupling_map,
        seed=0,
    )


def heavy_hex_backend(generic: bool = False) -> BackendV2:
    """``FakeFez`` (real Heron r2 calibration) if qiskit-ibm-runtime is installed (and not
    ``generic``), else a generic backend on a distance-7 heavy-hex lattice."""
    try:
        if generic:
            raise ImportError
        from qiskit_ibm_runtime.fake_provider import FakeFez
    except ImportError:
        heavy_hex = CouplingMap.from_heavy_hex(HEAVY_HEX_DISTANCE, bidirectional=True)
        return generic_superconducting(heavy_hex)
    return FakeFez()


def resolve_target(name: str) -> DeviceTarget:
    """A built-in target by name, or a ``Target``/``BackendV2`` by class path (``pkg.mod.Cls``).

    Raises:
        UserError: an unknown name, a path that does not import, or an object of another type.
    """
    if name in ("all_to_all", "all_to_all_generic"):
        return trapped_ion_device(generic=name == "all_to_all_generic")
    if name in ("heavy_hex", "heavy_hex_generic"):
        backend = heavy_hex_backend(generic=name == "heavy_hex_generic")
        return DeviceTarget(f"heavy_hex ({backend.name})", backend.target, backend)
    if name.startswith(FAKE_PREFIX):
        backend = fake_backend(name)
        return DeviceTarget(name, backend.target, backend)
    module_name, _, attribute = name.rpartition(".")
    if not module_name:
        raise UserError(
            f"unknown target {name!r}: use one of {[*BUILTIN_TARGETS, *OTHER_TARGETS]}, i.e. the "
            "class path of a qiskit Target or BackendV2 such as "
            "qiskit_ibm_runtime.fake_provider.FakeTorino"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise UserError(f"target {name!r} does not import: {error}") from error
    made = factory() if callable(factory) else factory
    if isinstance(made, BackendV2):
        return DeviceTarget(name, made.target, made)
    if isinstance(made, Target):
        return DeviceTarget(name, made)
    raise UserError(f"target {name!r} gave a {type(made).__name__}, not a Target or BackendV2")


def check_fits(num_qubits: int, device: DeviceTarget) -> None:
    """Raise a :class:`UserError` when a circuit is wider than the device."""
    if num_qubits > device.target.num_qubits:
        raise UserError(
            f"a {num_qubits}-qubit circuit does not fit target {device.name!r} "
            f"({device.target.num_qubits} qubits): pick a larger target or fewer qubits"
        )
