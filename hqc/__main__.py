"""``python -m hqc``: the LightningCLI of :mod:`hqc.main`, user errors as one line (exit 2)."""

from hqc.main import cli

cli()
