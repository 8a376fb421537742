"""TorchQNN on a CUDA device gives the CPU's values and gradients (skipped without a GPU).

``tools/gpu_check.sh`` runs this file on a machine with a GPU; on CPU every test skips with
the reason below.
"""

import pytest
import torch

from hqc.quantum.circuits import reupload_circuit, z_observables
from hqc.quantum.torch_qnn import TorchQNN

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _values_and_grads(module, x):
    x = x.clone().requires_grad_(True)
    out = module(x)
    (out * torch.arange(1, out.shape[1] + 1, device=x.device)).sum().backward()
    return out.detach().cpu(), x.grad.cpu(), module.weight.grad.cpu()


@pytest.mark.parametrize(
    ("dtype", "real", "tol"),
    [(torch.float64, None, 1e-10), (torch.float64, False, 1e-10), (torch.float32, None, 1e-5)],
)
def test_cuda_matches_cpu(dtype, real, tol):
    circuit, inputs, weights = reupload_circuit(6, reuploads=2, layers=2, connectivity=2)
    gen = torch.Generator().manual_seed(0)
    w = torch.rand(len(weights), generator=gen, dtype=torch.float64) * 6 - 3
    x = torch.rand(16, len(inputs), generator=gen, dtype=torch.float64) * 6 - 3
    obs = z_observables(6, (0, 3))
    cpu = TorchQNN(circuit, obs, inputs, weights, initial_weights=w, real=real).to(dtype)
    gpu = TorchQNN(circuit, obs, inputs, weights, initial_weights=w, real=real).to("cuda", dtype)
    expected = _values_and_grads(cpu, x.to(dtype))
    got = _values_and_grads(gpu, x.to("cuda", dtype))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=tol, rtol=0)
