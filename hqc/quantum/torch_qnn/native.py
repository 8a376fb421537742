"""A native gate-by-gate kernel for small real circuits, where per-op dispatch dominates.

Below about ten qubits a fused forward+backward is a few hundred torch ops of a few
microseconds each on states of a few hundred amplitudes, so a C loop over the gates (``native.c``:
forward, and the adjoint-method backward that walks the state back by the gates' transposes)
is several times faster than any sequence of tensor ops. It is compiled on first use with the
system's C compiler into hqc's cache (``$HQC_CACHE_DIR`` or ``~/.cache/hqc``), keyed by the
source's digest; without a compiler, or with ``HQC_NATIVE=0``, :func:`library` returns ``None``
and :class:`~hqc.quantum.torch_qnn.TorchQNN` keeps its fused torch path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import torch

from hqc.quantum.torch_qnn.gates import FlatGate

SOURCE = Path(__file__).with_name("native.c")
FLAGS = ("-O3", "-shared", "-fPIC", "-std=c99")  # no -march=native: a shared cache may span CPUs

_P = ctypes.c_void_p
_I = ctypes.c_int64


def library() -> ctypes.CDLL | None:
    """The compiled kernel; ``None`` where it cannot be built or ``HQC_NATIVE=0`` turns it off."""
    return None if os.environ.get("HQC_NATIVE", "1") == "0" else _build()


@cache
def _build() -> ctypes.CDLL | None:
    """Compile (once per source version and compiler) and load the kernel."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join((compiler, *FLAGS)).encode()).hexdigest()[:16]
    cache_dir = Path(os.environ.get("HQC_CACHE_DIR", Path.home() / ".cache" / "hqc")) / "native"
    target = cache_dir / f"hqc_native_{key}.so"
    if not target.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache_dir)
        os.close(fd)
        try:
            subprocess.run(
                [compiler, *FLAGS, "-o", tmp, str(SOURCE), "-lm"],
                check=True,
                capture_output=True,
                text=True,
            )
            os.replace(tmp, target)  # atomic: a parallel build never sees a torn library
        except (OSError, subprocess.CalledProcessError) as err:
            detail = getattr(err, "stderr", "") or err
            warnings.warn(
                f"hqc: native kernel not built ({detail}); using the torch path", stacklevel=3
            )
            return None
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    lib = ctypes.CDLL(str(target))
    lib.hqc_forward.argtypes = [_P, _I, _I, _P, _I, _I, _P, _P, _P, _P]
    lib.hqc_backward.argtypes = [_P, _P, _P, _I, _I, _P, _I, _I, _P, _P, _P, _P]
    lib.hqc_forward.restype = lib.hqc_backward.restype = None
    return lib


class GateTable:
    """A real circuit's gates as the kernel's arrays: qubits, angle slot and three 4x4 matrices.

    Qubit ``q`` is simulated at bit ``(q - frame) % n``, the order the observables' tables use.
    """

    def __init__(self, gates: list[FlatGate], num_qubits: int, frame: int = 0) -> None:
        self.count, self.dim, self.frame = len(gates), 2**num_qubits, frame
        self._order: torch.Tensor | None = None
        self._constants: tuple | None = None
        bit = [(q - frame) % num_qubits for q in range(num_qubits)]
        self.q0 = np.array([bit[g.qubits[0]] for g in gates], dtype=np.int64)
        self.q1 = np.array([bit[g.qubits[1]] if len(g.qubits) > 1 else -1 for g in gates], np.int64)
        self.slot = np.array([-1 if g.slot is None else g.slot for g in gates], dtype=np.int64)
        self.mats = np.zeros((len(gates), 3, 4, 4))
        for i, g in enumerate(gates):
            k = 2 ** len(g.qubits)
            for j, m in enumerate(g.mats):
                self.mats[i, j, :k, :k] = m.real
        self.__setstate__(self.__dict__)

    def frame_order(self) -> torch.Tensor:
        """Index taking a state from the logical qubit order to the simulated one."""
        if self._order is None:
            n, x = self.dim.bit_length() - 1, np.arange(self.dim)
            bits = (((x >> p) & 1) << ((p + self.frame) % n) for p in range(n))
            self._order = torch.as_tensor(sum(bits, np.zeros_like(x)))
        return self._order

    def constants(self, qnn: torch.nn.Module) -> tuple:
        """``qnn``'s angle and observable tables in float64 on the CPU, copied once (the module's
        own buffers follow its dtype, so a float32 module would cast them on every call)."""
        if self._constants is None:
            a, b, diag = (
                getattr(qnn, k).to("cpu", torch.float64) for k in ("_angle_a", "_angle_b", "_diag")
            )
            flips = list(
                zip(qnn._flip_index.cpu(), qnn._flip_re.to("cpu", torch.float64), strict=True)
            )
            self._constants = (a, b, diag, flips)
        return self._constants

    def __getstate__(self) -> dict:
        """Pickle/deepcopy without the raw pointers (they would outlive their arrays)."""
        return {k: v for k, v in self.__dict__.items() if k != "args"}

    def __setstate__(self, state: dict) -> None:
        """Restore, pointing the kernel's arguments at this copy's own arrays."""
        self.__dict__.update(state)
        arrays = (self.q0, self.q1, self.slot, self.mats)
        self.args = (self.count, *(a.ctypes.data for a in arrays))  # the kernel's last arguments


class NativeQNN(torch.autograd.Function):
    """Expectations ``(B, J)`` of a :class:`~hqc.quantum.torch_qnn.TorchQNN` with affine angles,
    from inputs ``(B, I)``, weights ``(W,)`` and initial states ``(B, 2**Q)`` (``None``:
    ``|0...0>``), as one autograd node: at this size each extra node (a cast, the angles'
    matmul, the observables' GEMM) costs about as much as the whole simulation."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        inputs: torch.Tensor,
        weight: torch.Tensor,
        state: torch.Tensor | None,
        qnn: torch.nn.Module,
    ) -> torch.Tensor:
        """Angles, evolution and expectations in float64."""
        table: GateTable = qnn._native
        a, b, diag, flips = table.constants(qnn)
        n_in = inputs.shape[1]
        x, w = inputs.detach().to(torch.float64), weight.detach().to(torch.float64)
        phi = torch.addmm(torch.addmv(b, a[n_in:].T, w), x, a[:n_in]).contiguous()
        if state is None:
            psi = torch.zeros(len(x), table.dim, dtype=torch.float64)
            psi[:, 0] = 1.0
        else:
            psi = state.detach().to(torch.float64).index_select(1, table.frame_order())
        batch = len(psi)
        ctx.lib = lib = library()
        lib.hqc_forward(psi.data_ptr(), batch, table.dim, phi.data_ptr(), phi.shape[1], *table.args)
        out = psi.square() @ diag
        for index, d_re in flips:
            out += (psi.index_select(1, index) * psi) @ d_re
        ctx.table, ctx.given, ctx.dtypes = table, state is not None, (inputs.dtype, weight.dtype)
        ctx.n_in = n_in
        ctx.save_for_backward(phi, psi)
        return out.to(weight.dtype)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, None]:
        """The observables' gradient by the final state, then the adjoint walk back."""
        table: GateTable = ctx.table
        (phi, out), (a, _, diag, flips) = ctx.saved_tensors, table._constants
        g = grad.to(torch.float64)
        lam = 2 * out * (g @ diag.T)
        for index, d_re in flips:
            s = g @ d_re.T  # <ψ|P|ψ> = Σ_x ψ[x^m] ψ[x] d[x]: both factors' derivatives
            lam += out.index_select(1, index) * (s + s.index_select(1, index))
        psi, grad_phi = out.clone(), torch.zeros_like(phi)
        ctx.lib.hqc_backward(
            psi.data_ptr(),
            lam.data_ptr(),
            grad_phi.data_ptr(),
            len(psi),
            table.dim,
            phi.data_ptr(),
            phi.shape[1],
            *table.args,
        )
        n_in, grad_state = ctx.n_in, None
        if ctx.given:  # back from the simulated qubit order to the caller's
            grad_state = torch.empty_like(lam).index_copy_(1, table.frame_order(), lam)
        return (
            (grad_phi @ a[:n_in].T).to(ctx.dtypes[0]),
            (a[n_in:] @ grad_phi.sum(0)).to(ctx.dtypes[1]),
            grad_state,
            None,
        )
