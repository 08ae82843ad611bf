"""Reading CSVLogger metrics, formatting result tables and writing the Markdown report."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from castseg.report import (
    ModelRow,
    format_console_table,
    format_table,
    read_metrics_csv,
    write_report,
)

SPARSE_CSV = """\
epoch,step,train/loss,train/lr,train/fnr
0,0,4.5,0.001,
0,1,4.0,,0.25
0,2,,,
0,3,3.5,,0.5
1,9,,0.0005,
"""

ROWS = [
    ModelRow("teacher", 224_000_000, 41.23, 63.1, 812.44, {"disc": 50.1, "box": 32.25}),
    ModelRow("student", 21_600_000, 35.0, 58.72, 95.06, {"disc": 44.0, "box": math.nan}),
]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _stage_csv(path: Path, keys: list[str], steps: int = 30) -> Path:
    lines = [",".join(["epoch", "step", *keys])]
    for step in range(steps):
        values = [f"{1.0 / (step + 1) + i:.4f}" for i in range(len(keys))]
        lines.append(",".join(["0", str(step), *values]))
    return _write(path, "\n".join(lines) + "\n")


def test_read_metrics_csv_skips_empty_cells(tmp_path: Path) -> None:
    metrics = read_metrics_csv(_write(tmp_path / "metrics.csv", SPARSE_CSV))

    assert set(metrics) == {"train/loss", "train/lr", "train/fnr"}
    steps, values = metrics["train/loss"]
    assert steps.dtype == np.int64 and steps.tolist() == [0, 1, 3]
    assert values.tolist() == [4.5, 4.0, 3.5]
    assert metrics["train/lr"][0].tolist() == [0, 9]
    assert metrics["train/lr"][1].tolist() == [0.001, 0.0005]
    assert metrics["train/fnr"][0].tolist() == [1, 3]
    assert metrics["train/fnr"][1].tolist() == [0.25, 0.5]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epoch,train/loss\n0,1.0\n", "no 'step' column"),
        ("", "no 'step' column"),
        ("step,train/loss\n0,1.0\n1,abc\n", "line 3: column 'train/loss' holds 'abc'"),
        ("step,train/loss\n0,1.0,7\n", "line 2: expected 2 cells, got 3"),
        ("step,train/loss\n0.5,1.0\n", "step must be an integer"),
    ],
)
def test_broken_csv_is_a_value_error_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path / "stage" / "metrics.csv", text)
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        read_metrics_csv(path)
    assert str(path) in str(info.value)


def test_missing_csv_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_metrics_csv(tmp_path / "missing.csv")


def test_format_table_rows() -> None:
    lines = format_table(ROWS).splitlines()
    assert lines[0] == "| model | params (M) | maskAP | AP50 | wall time (s) |"
    assert lines[2] == "| teacher | 224.00 | 41.2 | 63.1 | 812.4 |"
    assert lines[3] == "| student | 21.60 | 35.0 | 58.7 | 95.1 |"


def test_console_table_is_aligned() -> None:
    lines = format_console_table(ROWS).splitlines()
    assert len(lines) == 4 and len({len(line) for line in lines}) == 1
    assert lines[2].split() == ["teacher", "224.00", "41.2", "63.1", "812.4"]


def test_write_report(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    all_keys = ["train/loss", "train/l_sup", "train/l_semi", "train/l_pxl", "train/fnr"]
    stage_logs = {
        "teacher adaptation": _stage_csv(logs / "teacher" / "metrics.csv", all_keys).parent,
        "knowledge transfer": _stage_csv(logs / "transfer.csv", [*all_keys, "train/margin"]),
        "student refinement": logs / "refine" / "metrics.csv",  # never written
    }
    predictions = tmp_path / "elsewhere" / "grid.png"
    predictions.parent.mkdir()
    Image.new("RGB", (8, 8)).save(predictions)
    config = {"seed": 3, "data": {"root": Path("/data/coco"), "sizes": (224, 448)}}

    report = write_report(
        tmp_path / "out",
        title="CAST on synthetic shapes",
        rows=ROWS,
        stage_logs=stage_logs,
        predictions_png=predictions,
        config=config,
        notes=["tiny run"],
    )

    text = report.read_text()
    assert report == tmp_path / "out" / "report.md"
    assert text.startswith("# CAST on synthetic shapes\n")
    assert "- tiny run" in text
    assert "| teacher | 224.00 | 41.2 | 63.1 | 812.4 |" in text
    assert "| student | 21.60 | 35.0 | 58.7 | 95.1 |" in text
    assert "| box | 32.2 | n/a |" in text  # per-class table: classes as rows, models as columns
    assert "'student refinement'" in text and "not found" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert set(links) == {"ap.png", "losses.png", "monitors.png", "predictions.png"}
    for link in links:
        with Image.open(report.parent / link) as png:
            png.verify()
            assert png.format == "PNG"
    block = re.search(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert block is not None
    assert yaml.safe_load(block.group(1)) == {
        "seed": 3,
        "data": {"root": "/data/coco", "sizes": [224, 448]},
    }
    assert not [p for p in report.parent.iterdir() if p.name.startswith(".")]


def test_write_report_without_logs_or_models(tmp_path: Path) -> None:
    report = write_report(
        tmp_path,
        title="empty",
        rows=[],
        stage_logs={"teacher": tmp_path / "absent.csv"},
        predictions_png=None,
        config={},
    )
    text = report.read_text()
    assert "No model was evaluated." in text
    assert "No stage logged losses." in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]
