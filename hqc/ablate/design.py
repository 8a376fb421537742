"""Designs → cells: which level of every factor each cell uses (pyDOE3 for the factorials).

``full`` is every combination (``pyDOE3.fullfact``); ``ofat`` the base cell (every factor at
its first level) plus one cell per other level of one factor; the two-level screens map
pyDOE3's −1/+1 columns to a factor's first/second level: ``fractional`` from generators
(``pyDOE3.fracfact``, e.g. ``"a b c ab"``) or from a resolution (``fracfact_by_res``; 7 factors
at resolution IV is the 16-run 2^(7-3)), ``plackett_burman`` from ``pyDOE3.pbdesign``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyDOE3

from hqc.ablate.matrix import Matrix
from hqc.errors import UserError


@dataclass(frozen=True)
class Cell:
    """One design point: a level name per factor."""

    levels: dict[str, str]

    @property
    def name(self) -> str:
        """Directory-safe, readable id: ``factor-level__factor-level``."""
        return "__".join(f"{f}-{lv}" for f, lv in self.levels.items()).replace("/", "_")


def coded(matrix: Matrix) -> np.ndarray:
    """The two-level design matrix (runs × factors, entries ±1) of a screening design."""
    design, k = matrix.design, len(matrix.factors)
    if design.type == "plackett_burman":
        return pyDOE3.pbdesign(k)
    if design.generators is not None:
        return pyDOE3.fracfact(design.generators)
    try:
        return pyDOE3.fracfact_by_res(k, design.resolution)
    except ValueError as error:
        raise UserError(
            f"{matrix.path}: design.resolution: {error} ({k} factors, resolution "
            f"{design.resolution})"
        ) from None


def cells(matrix: Matrix) -> list[Cell]:
    """The design's cells in run order (duplicates removed, first occurrence kept)."""
    names = {f: list(levels) for f, levels in matrix.factors.items()}
    factors = list(names)
    if matrix.design.type == "full":
        rows = pyDOE3.fullfact([len(names[f]) for f in factors]).astype(int)
    elif matrix.design.type == "ofat":
        rows = [np.zeros(len(factors), int)]
        for j, f in enumerate(factors):
            for i in range(1, len(names[f])):
                row = np.zeros(len(factors), int)
                row[j] = i
                rows.append(row)
    else:
        rows = (coded(matrix) > 0).astype(int)
    out = [Cell({f: names[f][i] for f, i in zip(factors, row, strict=True)}) for row in rows]
    return list({c.name: c for c in out}.values())


def codes(matrix: Matrix, cell: Cell) -> dict[str, int]:
    """±1 coding of a cell for a factor with two levels (first −1, second +1)."""
    return {
        f: -1 if level == next(iter(matrix.factors[f])) else 1
        for f, level in cell.levels.items()
        if len(matrix.factors[f]) == 2
    }
