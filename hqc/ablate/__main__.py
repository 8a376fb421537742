"""``python -m hqc.ablate {run,report} MATRIX ...``: run a matrix, then aggregate it.

``run`` (:mod:`hqc.ablate.runner`) fits every run of the design; ``report``
(:mod:`hqc.ablate.report`) turns the run directories into tables and plots. Each command's
module is imported only when it is asked for. Mistakes in a matrix file print one line and
exit 2 (:func:`hqc.errors.run_guarded`); a run that failed makes ``run`` exit 1.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from hqc.errors import UserError, run_guarded

COMMANDS = {"run": "hqc.ablate.runner:main", "report": "hqc.ablate.report:report_main"}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a command; returns its exit status."""
    if argv is None:  # the config parser gets its arguments explicitly, not from sys.argv
        argv, sys.argv = sys.argv[1:], sys.argv[:1]
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m hqc.ablate {{{','.join(COMMANDS)}}} ... (--help per command)")
        return 0
    if argv[0] not in COMMANDS:
        raise UserError(f"unknown command {argv[0]!r} (expected one of {', '.join(COMMANDS)})")
    module, function = COMMANDS[argv[0]].split(":")
    status = getattr(importlib.import_module(module), function)(argv[1:])
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
