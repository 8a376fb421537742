"""Classical stages: projection, angles, MLP (parameter matching), readout, identity."""

import math

import pytest
import torch

from hqc.angles import ScaledAngles
from hqc.mlp import MLP, match_hidden, mlp_parameters
from hqc.projection import LinearProjection
from hqc.readout import LinearReadout
from hqc.stages import Identity


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("hidden", [0, 48, 96, 144, 192])
def test_mlp_widths_of_the_paper(hidden):
    mlp = MLP(hidden=hidden)
    assert mlp.build(768, 2) == 2
    assert n_params(mlp) == mlp_parameters(768, hidden, 2)
    assert mlp(torch.randn(5, 768)).shape == (5, 2)


def test_paper_parameter_counts():
    assert mlp_parameters(768, 0, 2) == 1538  # the paper's smallest MLP
    assert mlp_parameters(768, 192, 2) == 148034  # and its largest


@pytest.mark.parametrize("target", [400, 886, 5000, 148034])
def test_parameter_matching_is_closest(target):
    h = match_hidden(target, 768, 2)
    best = min(range(1, 400), key=lambda k: abs(mlp_parameters(768, k, 2) - target))
    assert abs(mlp_parameters(768, h, 2) - target) == abs(mlp_parameters(768, best, 2) - target)
    mlp = MLP(parameters=target)
    mlp.build(768, 2)
    assert mlp.hidden == h


def test_mlp_settings_are_checked():
    with pytest.raises(ValueError, match=r"exactly one of core\.hidden or core\.parameters"):
        MLP()
    with pytest.raises(ValueError, match="exactly one"):
        MLP(hidden=4, parameters=100)
    with pytest.raises(ValueError, match=r"core\.hidden"):
        MLP(hidden=-1)


def test_projection_angles_readout():
    proj = LinearProjection(out_features=6)
    assert proj.build(384, 2) == 6
    x = proj(torch.randn(3, 384))
    angles = ScaledAngles(squash="tanh")
    assert angles.build(6, 2) == 6
    a = angles(x)
    assert a.abs().max() <= math.pi
    torch.testing.assert_close(a, math.pi * torch.tanh(x))
    readout = LinearReadout()
    assert readout.build(6, 3) == 3
    assert readout(a).shape == (3, 3)
    with pytest.raises(ValueError, match=r"projection\.out_features"):
        LinearProjection(out_features=0)
    with pytest.raises(ValueError, match=r"angle_encoder\.squash"):
        ScaledAngles(squash="cosine")


def test_identity_passes_through():
    identity = Identity()
    assert identity.build(7, 2) == 7
    x = torch.randn(2, 7)
    assert identity(x) is x
