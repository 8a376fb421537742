"""One exception type for mistakes in the user's input, and the CLI guard that prints it.

Anything the user can fix by editing a file or a setting raises :class:`UserError` with a
message naming that file, line or setting. ``python -m hqc …`` (and ``hqc.ablate``,
``hqc export``) print such a message as one line on stderr and exit with status 2; a genuine
bug still shows its full traceback. ``HQC_DEBUG=1`` shows the traceback for user errors too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Exit status for a user error, as argparse/jsonargparse use for a bad command line.
USER_ERROR_EXIT = 2


class UserError(ValueError):
    """A bad file, setting, circuit or checkpoint: its message says which and how to fix it.

    A ``ValueError`` subclass, so code (and tests) catching ``ValueError`` keep working.
    """


def run_guarded(entry: Callable[[], T]) -> T:
    """Run ``entry``; a :class:`UserError` (also one raised as another error's cause) exits 2."""
    try:
        return entry()
    except Exception as error:  # re-raised unless it is (caused by) a UserError
        user_error = _find_user_error(error)
        if user_error is None or os.environ.get("HQC_DEBUG"):
            raise
        print(f"error: {user_error}", file=sys.stderr)
        raise SystemExit(USER_ERROR_EXIT) from None


def _find_user_error(error: BaseException) -> UserError | None:
    """The first :class:`UserError` in ``error``'s cause/context chain (jsonargparse wraps them)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, UserError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
