"""The matrix file: base config, factors with named levels, seeds and a design, validated.

A matrix is a YAML file (``ablations/*.yaml`` ships the paper's)::

    name: qubit_sweep                  # default: the file's stem; also the W&B group
    base: ../configs/hybrid.yaml       # one path or a list, relative to this file
    args: [--trainer.max_epochs=20]    # extra CLI arguments for every run
    seeds: [0, 1, 2]                   # each drives the weights and the paper split's draw
    design: full                       # full | ofat | {type: fractional, generators: a b ab}
                                       # | {type: fractional, resolution: 4} | plackett_burman
    reference: {head: hybrid}          # the cell paired differences are taken against
    plot: {x: qubits, hue: head}       # optional: accuracy against a numeric factor
    factors:
      head:
        hybrid: {}                                     # the base as it is
        classical:
          config: ../ablations/classical_head.yaml     # a one-file fragment (or a list)
          match_parameters: hybrid                     # core.parameters = that cell's count
      qubits:
        4: {set: {model.init_args.projection.init_args.measured: 2}}

A level is a fragment path, or a mapping of ``config`` (fragment paths), ``set`` (dotted key →
value) and ``match_parameters`` (a level of the same factor, or ``{level, key}``): the run
then sets ``key`` (default the MLP core's ``parameters``) to the trainable parameter count of
the same cell with this factor at that level. Every mistake is a :class:`UserError` naming the
file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hqc.errors import UserError

DESIGNS = ("full", "ofat", "fractional", "plackett_burman")
TWO_LEVEL_DESIGNS = ("fractional", "plackett_burman")
MATRIX_KEYS = {"name", "base", "args", "seeds", "design", "reference", "plot", "factors", "root"}
LEVEL_KEYS = {"config", "set", "match_parameters"}
DESIGN_KEYS = {"type", "generators", "resolution"}
MATCH_KEY = "model.init_args.core.init_args.parameters"
"""Where a ``match_parameters`` level puts the matched count by default (:class:`hqc.mlp.MLP`)."""


@dataclass(frozen=True)
class Match:
    """Set ``key`` to the trainable parameters of the cell with this factor at ``level``."""

    level: str
    key: str = MATCH_KEY


@dataclass(frozen=True)
class Level:
    """One named level of a factor: fragments, dotted settings and an optional parameter match."""

    configs: tuple[Path, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    match: Match | None = None


@dataclass(frozen=True)
class Design:
    """The design's type and, for ``fractional``, its generators or resolution."""

    type: str
    generators: str | None = None
    resolution: int | None = None


@dataclass(frozen=True)
class Matrix:
    """A validated matrix file."""

    path: Path
    name: str
    base: tuple[Path, ...]
    args: tuple[str, ...]
    seeds: tuple[int, ...]
    design: Design
    factors: dict[str, dict[str, Level]]
    reference: dict[str, str]
    plot: dict[str, str]
    root: Path


def load_matrix(path: str | Path) -> Matrix:
    """Read and validate a matrix file; paths inside it are relative to the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"matrix file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping with 'base' and 'factors'")
    _unknown(path, "", raw, MATRIX_KEYS)
    for key in ("base", "factors"):
        if key not in raw:
            raise UserError(f"{path}: missing required key '{key}'")
    name = str(raw.get("name", path.stem))
    factors = _factors(path, raw["factors"])
    design = _design(path, raw.get("design", "full"), factors)
    return Matrix(
        path=path,
        name=name,
        base=tuple(_paths(path, "base", raw["base"])),
        args=tuple(str(a) for a in _list(path, "args", raw.get("args", []))),
        seeds=tuple(_seeds(path, raw.get("seeds", [0]))),
        design=design,
        factors=factors,
        reference=_reference(path, raw.get("reference"), factors),
        plot=_plot(path, raw.get("plot"), factors),
        root=Path(raw["root"]) if "root" in raw else Path("runs/ablate") / name,
    )


def _unknown(path: Path, where: str, raw: dict, allowed: set[str]) -> None:
    extra = sorted(str(k) for k in raw if k not in allowed)
    if extra:
        at = f"{where}: " if where else ""
        raise UserError(
            f"{path}: {at}unknown key '{extra[0]}' (expected one of {', '.join(sorted(allowed))})"
        )


def _list(path: Path, where: str, value: Any) -> list:
    if isinstance(value, (str, int, float)):
        return [value]
    if not isinstance(value, list):
        raise UserError(f"{path}: {where}: expected a value or a list")
    return value


def _paths(path: Path, where: str, value: Any) -> list[Path]:
    paths = [path.parent / str(p) for p in _list(path, where, value)]
    for p in paths:
        if not p.is_file():
            raise UserError(f"{path}: {where}: config file not found: {p}")
    return paths


def _seeds(path: Path, value: Any) -> list[int]:
    seeds = _list(path, "seeds", value)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise UserError(f"{path}: seeds: expected a non-empty list of whole numbers")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{path}: seeds: repeated seed in {seeds}")
    return seeds


def _factors(path: Path, raw: Any) -> dict[str, dict[str, Level]]:
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"{path}: factors: expected a mapping of factor → levels")
    factors: dict[str, dict[str, Level]] = {}
    for factor, levels in raw.items():
        if not isinstance(levels, dict) or not levels:
            raise UserError(f"{path}: factors.{factor}: expected a mapping of level name → level")
        factors[str(factor)] = {
            str(name): _level(path, f"factors.{factor}.{name}", spec)
            for name, spec in levels.items()
        }
    for factor, levels in factors.items():
        for name, level in levels.items():
            if level.match is None:
                continue
            if level.match.level not in levels:
                raise UserError(
                    f"{path}: factors.{factor}.{name}.match_parameters: unknown level "
                    f"'{level.match.level}' (levels of {factor}: {', '.join(levels)})"
                )
            if levels[level.match.level].match is not None:
                raise UserError(
                    f"{path}: factors.{factor}.{name}.match_parameters: level "
                    f"'{level.match.level}' matches another level itself; name one without"
                )
    return factors


def _level(path: Path, where: str, spec: Any) -> Level:
    if spec is None:
        return Level()
    if isinstance(spec, str):
        return Level(configs=tuple(_paths(path, where, spec)))
    if not isinstance(spec, dict):
        raise UserError(f"{path}: {where}: expected a fragment path or a mapping")
    _unknown(path, where, spec, LEVEL_KEYS)
    settings = spec.get("set", {})
    if not isinstance(settings, dict):
        raise UserError(f"{path}: {where}.set: expected a mapping of dotted key → value")
    return Level(
        configs=tuple(_paths(path, f"{where}.config", spec.get("config", []))),
        settings={str(k): v for k, v in settings.items()},
        match=_match(path, f"{where}.match_parameters", spec.get("match_parameters")),
    )


def _match(path: Path, where: str, spec: Any) -> Match | None:
    if spec is None:
        return None
    if isinstance(spec, (str, int)):
        return Match(level=str(spec))
    if not isinstance(spec, dict) or "level" not in spec:
        raise UserError(f"{path}: {where}: expected a level name or {{level, key}}")
    _unknown(path, where, spec, {"level", "key"})
    return Match(level=str(spec["level"]), key=str(spec.get("key", MATCH_KEY)))


def _design(path: Path, spec: Any, factors: dict[str, dict[str, Level]]) -> Design:
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict):
        raise UserError(f"{path}: design: expected a name or a mapping with 'type'")
    _unknown(path, "design", spec, DESIGN_KEYS)
    kind = spec.get("type")
    if kind not in DESIGNS:
        raise UserError(f"{path}: design: unknown type {kind!r} (expected one of {DESIGNS})")
    design = Design(kind, spec.get("generators"), spec.get("resolution"))
    if kind in TWO_LEVEL_DESIGNS:
        for factor, levels in factors.items():
            if len(levels) != 2:
                raise UserError(
                    f"{path}: factors.{factor}: a {kind} design needs exactly 2 levels, "
                    f"got {len(levels)}"
                )
    if kind == "fractional" and (design.generators is None) == (design.resolution is None):
        raise UserError(f"{path}: design: fractional needs exactly one of generators, resolution")
    if design.generators is not None and len(design.generators.split()) != len(factors):
        raise UserError(
            f"{path}: design.generators: {len(design.generators.split())} words for "
            f"{len(factors)} factors ({', '.join(factors)})"
        )
    return design


def _reference(path: Path, spec: Any, factors: dict[str, dict[str, Level]]) -> dict[str, str]:
    spec = spec or {}
    if not isinstance(spec, dict):
        raise UserError(f"{path}: reference: expected a mapping factor → level")
    reference = {f: next(iter(levels)) for f, levels in factors.items()}
    for factor, level in spec.items():
        if factor not in factors:
            raise UserError(f"{path}: reference: unknown factor '{factor}'")
        if str(level) not in factors[factor]:
            raise UserError(f"{path}: reference.{factor}: unknown level '{level}'")
        reference[factor] = str(level)
    return reference


def _plot(path: Path, spec: Any, factors: dict[str, dict[str, Level]]) -> dict[str, str]:
    spec = spec or {}
    if not isinstance(spec, dict):
        raise UserError(f"{path}: plot: expected a mapping with x (and hue)")
    _unknown(path, "plot", spec, {"x", "hue"})
    for key, factor in spec.items():
        if factor not in factors:
            raise UserError(f"{path}: plot.{key}: unknown factor '{factor}'")
    return {k: str(v) for k, v in spec.items()}
