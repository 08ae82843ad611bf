"""Atomic file writes (a file appears complete at its path or not at all), and the check that an
output folder can be one.

Checkpoints, pseudo-label caches and reports are written to a temporary file in the same folder
and renamed onto their path only once fully written, so an interrupted run never leaves a
half-written file that a later run would trust.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed onto `path`.

    The caller creates and writes the temporary file (e.g. `torch.save(obj, tmp)`). When the
    block raises, the temporary file is removed and `path` is left as it was. Missing parent
    folders are created. The temporary file is synced to disk before the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A hidden name in the same folder: the rename stays on one file system, so it is atomic.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"nothing was written to the temporary file {tmp} for {path}")
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | Path, data: Any, *, indent: int | None = 2) -> None:
    """Write `data` as JSON to `path` atomically; unserialisable data raises before any write."""
    atomic_write_text(path, json.dumps(data, indent=indent) + "\n")


def check_output_folder(folder: Path, what: str) -> None:
    """ValueError naming `what` when `folder` cannot become a folder: it, or the nearest of its
    parents that exists, is not a folder. Checked before any work, so nothing is half-written."""
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                where = "is" if path == folder else f"is inside {path}, which is"
                raise ValueError(f"{what} {folder} {where} a file; expected a folder")
            return
