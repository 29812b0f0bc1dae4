"""User errors: mistakes a user can fix, reported as one line with exit code 2, no traceback.

Every tool's ``main(argv)`` raises; the ``if __name__ == '__main__'`` block runs it through
:func:`run_cli`, which turns a :class:`UserError` into ``error: <message>`` on stderr and exit
code 2. Tests call ``main`` directly and see the exception. A message names the file or config
key at fault and says what to do. The subclasses keep the built-in base that callers caught
before (``FileNotFoundError``, ``ValueError``, ...).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence


class UserError(Exception):
    """A mistake in the user's input (a path, a file's content, an option): one line, exit 2."""


class MissingInputError(UserError, FileNotFoundError):
    """A file or folder the user named (or the config names) does not exist."""


class CorruptImageError(UserError, RuntimeError):
    """An image file could not be decoded."""


class InvalidInputError(UserError, ValueError):
    """An input file or value exists but cannot be used (wrong format, size, key, ...)."""


def run_cli(main: Callable[[Sequence[str] | None], object],
            argv: Sequence[str] | None = None) -> None:
    """Run a tool's ``main``; a :class:`UserError` becomes one line on stderr and exit code 2."""
    try:
        main(argv)
    except UserError as e:
        lines = [' '.join(line.split()) for line in str(e).splitlines() if line.strip()]
        print('error: ' + '; '.join(lines), file=sys.stderr)  # always one line
        raise SystemExit(2) from None
