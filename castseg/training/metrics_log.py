"""A training stage's log: Lightning's CSVLogger `metrics.csv`, read by one reader.

The log has a `step` column (and `epoch`) plus one column per logged key, sparse (a key is empty
on rows where it was not logged). `read_log` reads its rows, strictly (the report and summaries:
a malformed row is an error naming the file and line) or tolerantly (a resumed stage merging its
log: a row cut short by a kill is left out); `read_metrics_csv` turns a log into curves.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

Metrics = dict[str, tuple[np.ndarray, np.ndarray]]
METRICS_FILE = "metrics.csv"
_INDEX_COLUMNS = ("step", "epoch")


def read_log(path: Path, *, strict: bool) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header of the CSV log at `path` and its rows as (line number, cells), blank lines
    skipped; the rows are read as they are iterated.

    strict: ValueError naming the file (and line) for a header without a `step` column or a row
    with another number of cells than the header; else such a row is left out.
    """
    with path.open(newline="") as f:
        reader = csv.reader(io.StringIO(f.read(), newline=""))
    header = next(reader, None)
    if strict and (header is None or "step" not in header):
        raise ValueError(f"{path}: no 'step' column in the header (got {header})")
    return header or [], _rows(reader, header or [], path, strict)


def _rows(
    reader: Any, header: list[str], path: Path, strict: bool
) -> Iterator[tuple[int, list[str]]]:
    """The rows of a csv.reader as (line number, cells), as `read_log` says."""
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        if len(row) != len(header):
            if strict:
                raise ValueError(
                    f"{path}, line {line}: expected {len(header)} cells, got {len(row)}"
                )
            continue
        yield line, row


def read_metrics_csv(path: str | Path) -> Metrics:
    """Logged key → (steps [T] int64, values [T] float64) of a CSVLogger `metrics.csv`.

    Empty cells are skipped, so each key holds only the rows where it was logged, in file order.
    The index columns `step` and `epoch` are not returned as keys. Raises FileNotFoundError for
    a missing file and ValueError, naming the file and line, for a file without a `step` column,
    a row with the wrong number of cells, or a cell that is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}")
    columns: dict[str, tuple[list[int], list[float]]] = {}
    header, rows = read_log(path, strict=True)
    step_at = header.index("step")
    keys = [(i, name) for i, name in enumerate(header) if name not in _INDEX_COLUMNS]
    for name in (name for _, name in keys):
        columns[name] = ([], [])
    for line, row in rows:
        cells = [(name, row[i].strip()) for i, name in keys if row[i].strip()]
        if not cells:
            continue
        step = _parse(row[step_at].strip(), path, line, "step")
        if not step.is_integer():
            raise ValueError(f"{path}, line {line}: step must be an integer, got {step}")
        for name, cell in cells:
            columns[name][0].append(int(step))
            columns[name][1].append(_parse(cell, path, line, name))
    return {
        name: (np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64))
        for name, (steps, values) in columns.items()
        if steps
    }


def _parse(cell: str, path: Path, line: int, column: str) -> float:
    try:
        return float(cell)
    except ValueError:
        raise ValueError(
            f"{path}, line {line}: column {column!r} holds {cell!r}, not a number"
        ) from None


def metrics_file(log: str | Path) -> Path:
    """A stage log given as its folder means the metrics.csv inside it."""
    log = Path(log)
    return log / METRICS_FILE if log.is_dir() else log
