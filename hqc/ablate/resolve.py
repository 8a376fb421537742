"""One run's fully resolved LightningCLI config, merged by hqc's own parser.

Fragments are merged by the parser (as ``--config a --config b`` would), not concatenated, so a
fragment that swaps a ``class_path`` drops the old class's ``init_args`` instead of leaking them
into the new one; the result is dumped as the single ``config.yaml`` the child fits.
"""

from __future__ import annotations

import json
import logging
import re
from functools import cache
from typing import Any

from jsonargparse import ArgumentError

from hqc.errors import UserError
from hqc.main import HQCLI, main


class _ResolvingCLI(HQCLI):
    """Parses and applies hqc's defaults but instantiates nothing (a config costs milliseconds)."""

    def init_parser(self, **kwargs: Any) -> Any:
        """Raise on a bad key instead of printing usage and exiting; no abbreviated keys.

        argparse would take ``--trainer.max_epoch`` for ``--trainer.max_epochs``; a matrix's
        typo must fail instead.
        """
        return super().init_parser(**{**kwargs, "exit_on_error": False, "allow_abbrev": False})

    def instantiate_classes(self) -> None:
        """Nothing to build: only the merged config is wanted."""


def setting(key: str, value: Any) -> str:
    """A ``--key=value`` argument; non-strings as JSON, which the parser reads as YAML."""
    return f"--{key}={value if isinstance(value, str) else json.dumps(value)}"


def resolve(args: tuple[str, ...], where: str) -> str:
    """The merged config of ``args`` (``--config``s and settings) as YAML.

    Args:
        args: hqc CLI arguments without a subcommand.
        where: what to name in the error (the matrix file and cell).
    """
    cli = _parse(args, where)
    return cli.parser.dump(cli.config)


@cache
def trainable_parameters(args: tuple[str, ...], where: str) -> int:
    """Trainable parameters of the model ``args`` build (instantiated once per distinct args)."""
    _parse(args, where)  # the readable error for a bad key, before instantiating anything
    model = main(list(args), run=False).model
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _parse(args: tuple[str, ...], where: str) -> HQCLI:
    seed_log = logging.getLogger("lightning.fabric.utilities.seed")
    level = seed_log.level
    seed_log.setLevel(logging.WARNING)  # "Seed set to" once per resolved run is noise
    try:
        return main(list(args), run=False, cli_class=_ResolvingCLI)
    except (ArgumentError, ValueError) as error:
        raise UserError(f"{where}: {_innermost(error)}") from None
    finally:
        seed_log.setLevel(level)


def _innermost(error: Exception) -> str:
    """jsonargparse's nested message cut to its key path and its most deeply nested complaint."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    keys = re.findall(r'Parser key "([^"]+)"', str(error))
    depth = max(len(line) - len(line.lstrip()) for line in lines)
    inner = " ".join(line.strip() for line in lines if len(line) - len(line.lstrip()) == depth)
    return f"{'.'.join(keys)}: {inner}" if keys else inner
