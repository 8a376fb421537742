"""Shot estimates: exact marginal statistics, 1/√shots convergence, seeding, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from qiskit.quantum_info import SparsePauliOp

from hqc.errors import UserError
from hqc.quantum.shots import ShotSampler

MEANS = torch.linspace(-0.95, 0.95, 4000, dtype=torch.float64)


def _errors(shots: int, seed: int = 0) -> torch.Tensor:
    sampler = ShotSampler([SparsePauliOp("XZ")], shots, seed)
    return (sampler(MEANS[:, None]) - MEANS[:, None]).squeeze(1)


def test_shot_error_shrinks_like_one_over_sqrt_shots():
    """RMS error matches √((1-μ²)/shots) within 5 % (4000 draws: its own spread is ~1 %)."""
    rms = {}
    for shots in (16, 256, 4096):
        errors = _errors(shots)
        expected = math.sqrt(float((1 - MEANS**2).mean()) / shots)
        rms[shots] = float(errors.pow(2).mean().sqrt())
        assert rms[shots] == pytest.approx(expected, rel=0.05)
        assert abs(float(errors.mean())) < 5 * expected / math.sqrt(len(MEANS))  # unbiased
    assert rms[16] > 10 * rms[4096]  # 16 shots are measurably worse (expected ratio 16)


def test_estimates_are_shot_fractions_seeded_and_fresh_per_call():
    shots = 64
    sampler = ShotSampler([SparsePauliOp("Z")], shots, seed=5)
    first, second = sampler(MEANS[:50, None]), sampler(MEANS[:50, None])
    counts = (first + 1) * shots / 2
    assert torch.equal(counts, counts.round())  # k/shots with integer k
    assert not torch.equal(first, second)  # each call draws fresh shots
    again = ShotSampler([SparsePauliOp("Z")], shots, seed=5)
    assert torch.equal(again(MEANS[:50, None]), first)  # reproducible under one seed


def test_coefficients_and_identity_are_respected():
    ops = [SparsePauliOp("ZI", 0.5), SparsePauliOp("II", 2.0)]
    sampler = ShotSampler(ops, shots=10_000, seed=1)
    exact = torch.tensor([[0.25, 2.0]], dtype=torch.float64).repeat(200, 1)
    out = sampler(exact)
    assert torch.all(out[:, 1] == 2.0)
    assert torch.all(out[:, 0].abs() <= 0.5)
    assert float(out[:, 0].mean()) == pytest.approx(0.25, abs=5 * 0.5 * 0.87 / math.sqrt(2e6))


def test_straight_through_gradient_is_the_exact_gradient():
    x = torch.linspace(-1, 1, 7, dtype=torch.float64, requires_grad=True)
    mean = torch.sin(x)[:, None]
    weights = torch.randn(7, 1, dtype=torch.float64)
    sampled = ShotSampler([SparsePauliOp("Y")], shots=8, seed=0)(mean)
    (grad,) = torch.autograd.grad((sampled * weights).sum(), x)
    torch.testing.assert_close(grad, torch.cos(x) * weights[:, 0])
    assert not torch.allclose(sampled, mean)  # the forward value is the sampled one


def test_multi_term_observables_are_refused_by_name():
    with pytest.raises(UserError, match=r"observable 1 \(\['ZI', 'IZ'\]\)"):
        ShotSampler([SparsePauliOp("Z"), SparsePauliOp(["ZI", "IZ"])], shots=10)


def _layer():
    from hqc.quantum.circuits import reupload_circuit, z_observables
    from hqc.quantum.layer import QuantumLayer

    circuit, inputs, weights = reupload_circuit(3, reuploads=1, layers=1, connectivity=1)
    torch.manual_seed(0)
    layer = QuantumLayer(circuit, z_observables(3, [0, 2]), inputs, weights).double()
    return layer, torch.rand(5, 3, dtype=torch.float64, requires_grad=True)


def test_quantum_layer_with_shots_passes_the_exact_gradient():
    from hqc.quantum.execution import Execution

    layer, x = _layer()
    probe = torch.randn(5, 2, dtype=torch.float64)
    exact = layer(x)
    exact_grads = torch.autograd.grad((exact * probe).sum(), [x, layer.weight])
    layer.set_execution(Execution(shots=32, seed=1))
    sampled = layer(x)
    grads = torch.autograd.grad((sampled * probe).sum(), [x, layer.weight])
    for got, want in zip(grads, exact_grads, strict=True):
        torch.testing.assert_close(got, want)
    assert not torch.allclose(sampled, exact)
    assert torch.all((sampled - exact).abs() <= 1.0)  # an estimate of the same values
    layer.set_execution(Execution())
    torch.testing.assert_close(layer(x), exact, rtol=0, atol=0)


def test_classifier_gives_every_quantum_layer_its_own_stream(tmp_path, monkeypatch):
    """A user's own stage built on QuantumLayer gets the execution too; streams differ."""
    from hqc.classifier import Classifier
    from hqc.quantum.execution import Execution
    from hqc.stages import Core, Encoder

    class Fixed(Encoder):
        out_features = 3

        def forward(self, texts):
            return torch.ones(len(texts), 3)

    class TwoLayers(Core):  # a user's stage: two identical QuantumLayers, summed
        def build(self, in_features, num_classes):
            self.a, _ = _layer()
            self.b, _ = _layer()
            return 2

        def forward(self, x):
            return self.a(x) - self.b(x)

    model = Classifier(Fixed(), TwoLayers(), execution=Execution(shots=16, seed=3)).double()
    assert model.core.a.execution.shots == 16 and model.core.b.sampler is not None
    with torch.no_grad():
        out = model.core(torch.rand(50, 3, dtype=torch.float64))
    assert out.abs().sum() > 0  # same exact values, different shot draws
