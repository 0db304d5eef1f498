"""Stdout kept for a document: while a command computes the JSON it will print, whatever else writes to
stdout (a user's model printing as it is built, a library's banner, a child process) goes to stderr, so
the document alone reaches stdout and parses."""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def stdout_to_stderr(active: bool = True):
    """Inside the block, Python's ``print`` and file descriptor 1 (C libraries, child processes) write
    to stderr; both are restored after it. Nothing changes when ``active`` is false. Process-wide (file
    descriptor 1 is): for a command's main thread, not for library code or threads that share stdout."""
    if not active:
        yield
        return
    _flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no descriptor 1 or 2 to speak of: Python's stdout alone
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


def _flush() -> None:
    """Python's streams and the C library's, so nothing written on one side lands on the other."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)


__all__ = ["stdout_to_stderr"]
