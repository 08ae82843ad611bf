"""`castseg bench` with a tiny student and a small student standing in for the paper teacher.

No timing is asserted: the table must hold the expected rows, the parameter counts of the
models built, and ratios that follow from the figures it prints.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch

from castseg import cli
from castseg.commands import bench
from castseg.deploy.latency import count_parameters
from castseg.models.student import build_student

ROW = re.compile(
    r"^\| (?P<model>[^|]+) \| (?P<runtime>[^|]+) \| (?P<params>[\d.]+) \| (?P<ms>[\d.]+) \| "
    r"(?P<params_ratio>[\d.]+)× \| (?P<speedup>[\d.]+)× \|$"
)
FAST = ["--student-size", "tiny", "--height", "50", "--width", "60", "--repeats", "2"]
FAST += ["--warmup", "0", "--classes", "a,b,c"]


def run_bench(argv: list[str], capsys, teachers: list | None = None) -> str:
    """Run `castseg bench ARGV` with a small student as the teacher (appended to `teachers`);
    returns what it printed."""

    def small_teacher(class_names) -> torch.nn.Module:
        teacher = build_student("small", len(class_names))
        if teachers is not None:
            teachers.append(teacher)
        return teacher

    parser = argparse.ArgumentParser(prog="castseg")
    bench.add_parser(parser.add_subparsers())
    args = parser.parse_args(["bench", *argv])
    assert bench.run(args, teacher_factory=small_teacher) == 0
    return capsys.readouterr().out


def table_rows(text: str) -> list[dict[str, str]]:
    return [m.groupdict() for line in text.splitlines() if (m := ROW.match(line.strip()))]


def test_the_table_compares_student_and_teacher_on_the_same_input(capsys) -> None:
    teachers = []
    printed = run_bench([*FAST, "--teacher", "paper"], capsys, teachers)
    assert "Input [1, 3, 56, 70] (asked 50 × 60, rounded up to multiples of 14)" in printed
    rows = table_rows(printed)
    assert [(r["model"], r["runtime"]) for r in rows] == [
        ("teacher (paper)", "PyTorch eager"),
        ("student (tiny)", "PyTorch eager"),
    ]
    teacher_params = count_parameters(teachers[0])
    student_params = count_parameters(build_student("tiny", 3))
    assert [float(r["params"]) for r in rows] == [
        round(teacher_params / 1e6, 2),
        round(student_params / 1e6, 2),
    ]
    teacher, student = rows
    assert (teacher["params_ratio"], teacher["speedup"]) == ("1.00", "1.00")
    assert float(student["params_ratio"]) == round(teacher_params / student_params, 2)
    # The printed latencies are rounded to 0.1 ms; the ratio is computed before rounding.
    low = (float(teacher["ms"]) - 0.05) / (float(student["ms"]) + 0.05)
    high = (float(teacher["ms"]) + 0.05) / max(float(student["ms"]) - 0.05, 1e-9)
    assert low - 0.005 <= float(student["speedup"]) <= high + 0.005


def test_without_a_teacher_the_student_is_the_reference(capsys) -> None:
    rows = table_rows(run_bench([*FAST, "--teacher", "NONE"], capsys))
    assert [(r["model"], r["params_ratio"], r["speedup"]) for r in rows] == [
        ("student (tiny)", "1.00", "1.00")
    ]


def test_write_replaces_its_section_and_keeps_the_rest(tmp_path: Path, capsys) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nProse that stays.\n")
    for _ in range(2):
        printed = run_bench([*FAST, "--teacher", "NONE", "--write", str(path)], capsys)
        assert f"wrote the table into {path}" in printed
    text = path.read_text()
    assert text.startswith("# Benchmarks\n\nProse that stays.\n\n<!-- castseg bench -->\n")
    assert text.count("<!-- castseg bench -->") == text.count("<!-- /castseg bench -->") == 1
    assert "    castseg bench --student-size tiny --teacher NONE --height 50 --width 60" in text
    assert len(table_rows(text)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["BENCHMARKS.md"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_an_error(capsys) -> None:
    assert cli.main(["bench", *FAST, "--teacher", "NONE", "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
