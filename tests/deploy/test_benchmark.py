"""Benchmark rows and the ratio table: sizes rounded to the patch size, ratios from the rows."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from castseg.deploy.benchmark import BenchRow, benchmark, format_table
from castseg.deploy.input_size import input_multiple, round_up_size
from castseg.deploy.latency import Latency, count_parameters
from castseg.models.student import build_student


@pytest.mark.parametrize(
    ("size", "multiple", "expected"),
    [((512, 1024), 14, (518, 1036)), ((518, 1036), 14, (518, 1036)), ((1, 15), 14, (14, 28))],
)
def test_round_up_size(size, multiple, expected) -> None:
    assert round_up_size(size, multiple) == expected


def test_round_up_size_rejects_non_positive_sizes() -> None:
    with pytest.raises(ValueError, match="positive"):
        round_up_size((0, 10), 14)


def test_input_multiple_is_the_students_patch_size() -> None:
    assert input_multiple(build_student("tiny", 2)) == 14
    assert input_multiple(nn.Linear(2, 2)) == 1


def test_benchmark_measures_every_model_and_the_onnx_runtime_row(colour_segmenter) -> None:
    teacher = colour_segmenter(2)
    teacher.unused = nn.Linear(50, 50)  # parameters that do not change its predictions
    student = colour_segmenter(2)
    rows = benchmark(
        [("teacher", teacher), ("student", student)],
        (14, 28),
        device=torch.device("cpu"),
        warmup=1,
        repeats=2,
        onnx_model="student",
        class_names=("a", "b"),
    )
    assert [(r.model, r.runtime) for r in rows] == [
        ("teacher", "PyTorch eager"),
        ("student", "PyTorch eager"),
        ("student", "ONNX Runtime"),
    ]
    assert [r.parameters for r in rows] == [2551, 1, 1]
    assert rows[0].parameters == count_parameters(teacher)
    assert all(r.latency.repeats == 2 and r.latency.median_s > 0 for r in rows)


def test_format_table_divides_the_reference_figures_by_each_row() -> None:
    rows = [
        BenchRow("teacher", "PyTorch eager", 568_000_000, Latency(2.0, 1.9, 2.2, 5)),
        BenchRow("student", "PyTorch eager", 52_000_000, Latency(0.125, 0.12, 0.13, 5)),
        BenchRow("student", "ONNX Runtime", 52_000_000, Latency(0.08, 0.07, 0.09, 5)),
    ]
    table = format_table(rows)
    cells = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in table.splitlines()
        if re.match(r"\| (teacher|student)", line)
    ]
    assert cells == [
        ["teacher", "PyTorch eager", "568.00", "2000.0", "1.00×", "1.00×"],
        ["student", "PyTorch eager", "52.00", "125.0", "10.92×", "16.00×"],
        ["student", "ONNX Runtime", "52.00", "80.0", "10.92×", "25.00×"],
    ]
    assert "teacher, PyTorch eager ÷ each row" in table
