"""The statistics every hqc table reports: t-intervals, paired differences, screening effects.

Seeds are draws of the protocol, so a cell's seeds are a sample: its mean gets a 95 %
t-interval. Two cells run on the same seeds share their draws (split and initialisation), so
they are compared by the per-seed differences (a paired interval, much tighter than two
overlapping intervals). A two-level screen is read by ordinary least squares on the ±1 coding;
a factor's main effect is twice its coefficient (mean at +1 minus mean at −1).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of its t-interval (0 for a single value)."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, 0.0
    quantile = stats.t.ppf(0.5 + level / 2, len(values) - 1)
    return mean, quantile * statistics.stdev(values) / len(values) ** 0.5


def paired_differences(
    values: Mapping[object, float], reference: Mapping[object, float]
) -> list[float]:
    """``values[s] − reference[s]`` for every seed ``s`` both have, in ``values``' order."""
    return [v - reference[s] for s, v in values.items() if s in reference]


@dataclass(frozen=True)
class Effect:
    """A factor's main effect (mean at +1 minus mean at −1) with its standard error."""

    factor: str
    effect: float
    se: float
    ci: float
    """Half-width of the 95 % t-interval on the residual degrees of freedom."""


def main_effects(codes: np.ndarray, y: np.ndarray, factors: Sequence[str]) -> list[Effect]:
    """OLS of ``y`` on an intercept and the ±1 columns of ``codes`` (runs × factors).

    Every run (cell × seed) is one observation; the residual variance, and so the standard
    errors, come from seed-to-seed scatter and whatever the main-effects model leaves out.
    """
    codes, y = np.asarray(codes, float), np.asarray(y, float)
    x = np.column_stack([np.ones(len(y)), codes])
    beta, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    dof = len(y) - rank
    if rank < x.shape[1] or dof < 1:
        raise ValueError(
            f"main effects need a full-rank design with residual degrees of freedom "
            f"({len(y)} runs, {x.shape[1]} coefficients, rank {rank})"
        )
    residual = y - x @ beta
    sigma2 = residual @ residual / dof
    se = np.sqrt(np.diag(sigma2 * np.linalg.inv(x.T @ x)))
    quantile = stats.t.ppf(0.975, dof)
    return [
        Effect(f, 2 * b, 2 * s, 2 * s * quantile)
        for f, b, s in zip(factors, beta[1:], se[1:], strict=True)
    ]
