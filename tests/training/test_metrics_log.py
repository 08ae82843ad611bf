"""The one reader of a stage's metrics.csv: strict for the report and summaries, tolerant of a
row cut short by a kill for a resumed stage's log history."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from castseg.training.metrics_log import read_log, read_metrics_csv

CUT = "step,train/loss,epoch\n0,4.5,0\n\n1,4.0,0\n2,3.\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_tolerant_reading_leaves_out_a_cut_row_and_keeps_line_numbers(tmp_path):
    header, rows = read_log(write(tmp_path / "metrics.csv", CUT), strict=False)
    assert header == ["step", "train/loss", "epoch"]
    assert list(rows) == [(2, ["0", "4.5", "0"]), (4, ["1", "4.0", "0"])]
    assert read_log(write(tmp_path / "empty.csv", ""), strict=False)[0] == []


def test_strict_reading_names_the_file_and_line(tmp_path):
    path = write(tmp_path / "metrics.csv", CUT)
    _, rows = read_log(path, strict=True)
    with pytest.raises(ValueError, match=re.escape(f"{path}, line 5: expected 3 cells, got 2")):
        list(rows)
    with pytest.raises(ValueError, match="no 'step' column"):
        read_log(write(tmp_path / "no_step.csv", "epoch\n0\n"), strict=True)


def test_errors_come_in_file_order(tmp_path):
    path = write(tmp_path / "metrics.csv", "step,train/loss\n0,abc\n1,2,3\n")
    with pytest.raises(ValueError, match="line 2: column 'train/loss' holds 'abc'"):
        read_metrics_csv(path)
