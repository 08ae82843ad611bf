"""Reading CSVLogger metrics, formatting result tables and writing the Markdown report."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from castseg.report import ROW_DESCRIPTIONS, narrative, write_report
from castseg.report_figures import LOSS_KEYS, MONITOR_KEYS, ap_figure, curves_figure
from castseg.result_tables import ModelRow, format_console_table, format_table
from castseg.training.metrics_log import read_metrics_csv

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


CAST_ROWS = [
    ModelRow("teacher (zero-shot)", 9, 2.3, 8.1, 0.0, {}),
    ModelRow("teacher (CAST adapted)", 9, 11.4, 27.4, 217.5, {}),
    ModelRow("student (CAST knowledge transfer)", 2, 2.6, 7.4, 93.1, {}),
    ModelRow("student (CAST refined)", 2, 3.3, 9.6, 107.5, {}),
    ModelRow("student (supervised only)", 2, 3.0, 7.5, 55.4, {}),
]


def test_the_narrative_tells_rows_wall_time_resume_and_the_students_gain() -> None:
    story = " ".join(narrative(CAST_ROWS, predictions_of="the final student (CAST refined)"))
    for row in CAST_ROWS:
        assert f"**{row.name}**, {ROW_DESCRIPTIONS[row.name]}" in story
    assert "Wall time is the training time of a row's stages" in story
    assert "none was resumed" in story
    assert "scores 3.3 maskAP, +0.3 over the supervised-only student (3.0); AP50 +2.1" in story
    assert "predictions.png shows the final student (CAST refined)" in story

    worse = [*CAST_ROWS[:3], ModelRow("student (CAST refined)", 2, 2.5, 6.0, 1.0, {})]
    worse.append(CAST_ROWS[4])
    story = " ".join(narrative(worse, resumed=["teacher_zero_shot", "teacher_finetune"]))
    assert "2.5 maskAP, -0.5 over the supervised-only student" in story
    assert "resumed: teacher_zero_shot, teacher_finetune had finished in an earlier run" in story
    assert "--baseline" in " ".join(narrative(CAST_ROWS[:4]))


def test_the_story_opens_the_report(tmp_path: Path) -> None:
    story = narrative(CAST_ROWS)
    report = write_report(
        tmp_path, title="t", rows=CAST_ROWS, stage_logs={}, predictions_png=None, config={},
        story=story,
    )  # fmt: skip
    assert report.read_text().startswith(f"# t\n\n{' '.join(story)}\n\n## Results")


def test_ap_chart_names_do_not_collide() -> None:
    fig = ap_figure(CAST_ROWS)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # lays the text out
    renderer = canvas.get_renderer()
    boxes = [label.get_window_extent(renderer) for label in fig.axes[0].get_xticklabels()]
    assert len(boxes) == len(CAST_ROWS)
    for left, right in itertools.pairwise(boxes):
        assert left.x1 < right.x0, (left, right)


def test_every_curve_axis_is_labelled_and_the_fnr_line_explained(tmp_path: Path) -> None:
    log = _stage_csv(tmp_path / "distill.csv", ["train/loss", "train/fnr", "train/margin"])
    stages = {"distill": read_metrics_csv(log)}
    for titles in (LOSS_KEYS, MONITOR_KEYS):
        fig = curves_figure(stages, titles, "t")
        assert fig is not None
        for ax in fig.axes:
            assert ax.get_ylabel() and ax.get_xlabel() == "step (within stage)"
    fnr = curves_figure(stages, MONITOR_KEYS, "t").axes[0]
    legend = [text.get_text() for text in fnr.get_legend().get_texts()]
    assert "0.5: a negative as likely wrong as right" in legend
