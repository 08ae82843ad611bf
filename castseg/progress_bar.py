"""tqdm bars that stay readable in a log: redrawn in place on a terminal, plain lines otherwise.

tqdm redraws a bar with carriage returns, which a redirected log (nohup, SLURM, `> log`) keeps as
one ever-growing line of frames. When stderr is not a terminal, `progress_bar` gives the same bar
writing each frame as its own line, at most one every `PROGRESS_SECONDS` s, plus the last one.
Training stages have their own progress (`castseg.training.progress`), at the same interval.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, TextIO

from tqdm import tqdm

PROGRESS_SECONDS = 30.0


class LineWriter:
    """A text stream for tqdm that writes each of its frames as one line to `stream`."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        frame = text.replace("\r", "").rstrip()
        if frame:
            self.stream.write(frame + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool = True, **kwargs) -> tqdm:
    """A tqdm bar on stderr (kwargs as tqdm's), shown when `enabled`; see the module doc."""
    if enabled and not sys.stderr.isatty():
        kwargs.setdefault("mininterval", PROGRESS_SECONDS)
        kwargs.update(file=LineWriter(sys.stderr), leave=True, dynamic_ncols=False)
    return tqdm(iterable, disable=not enabled, **kwargs)
