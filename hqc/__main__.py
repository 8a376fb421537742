"""``python -m hqc``: the LightningCLI of :mod:`hqc.main`."""

from hqc.main import main

main()
