"""Ctrl-C as one line: SIGINT becomes `Interrupted`, which the resumable steps annotate.

Lightning turns a KeyboardInterrupt inside `fit` into `sys.exit(1)`, and a traceback through
pseudo-labelling tells the user nothing. Under `sigint_interrupts()` SIGINT raises `Interrupted`
instead (a BaseException, so no `except Exception` swallows it and Lightning re-raises it); a
training stage or the pseudo-label loop that it crosses records where it happened
(`Interrupted.during`), and the command line prints `str(err)` and exits with 130.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_CODE = 130  # 128 + SIGINT, what shells report for a process Ctrl-C stopped


class Interrupted(BaseException):
    """The user pressed Ctrl-C; `where` says in what, once a resumable step has said so."""

    def __init__(self, where: str | None = None) -> None:
        super().__init__(where)
        self.where = where

    def during(self, where: str) -> Interrupted:
        """This interruption, placed in `where` (the innermost place wins)."""
        if self.where is None:
            self.where = where
            self.args = (where,)
        return self

    def __str__(self) -> str:
        if self.where is None:
            return "interrupted"
        return f"interrupted during {self.where}; rerun the same command to resume"


@contextmanager
def sigint_interrupts() -> Iterator[None]:
    """Within the block, SIGINT in this process raises `Interrupted` (DataLoader workers, forked
    from it, keep the usual KeyboardInterrupt, which their loop handles quietly)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may handle signals
        return
    owner = os.getpid()

    def handler(signum: int, frame: object) -> None:
        if os.getpid() != owner:
            raise KeyboardInterrupt
        raise Interrupted

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
