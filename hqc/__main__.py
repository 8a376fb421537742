"""``python -m hqc``: the LightningCLI of :mod:`hqc.main`, user errors as one line (exit 2)."""

from hqc.errors import run_guarded
from hqc.main import main

run_guarded(main)
