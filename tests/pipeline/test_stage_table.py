"""The stage table: every stage of a CAST run declared once, with the file names and row labels
earlier runs wrote, and no other module of castseg spelling a stage name."""

from __future__ import annotations

from pathlib import Path

import castseg
from castseg.pipeline.stage_table import (
    PSEUDO_LABEL_PREFIX,
    STAGES,
    TEACHER_FINETUNE,
    TEACHER_SELFTRAIN,
    TEACHER_STAGES,
    pseudo_label_teacher,
)

# (name, checkpoint, row, teacher, baseline) as run folders, results.json and reports hold them.
EXPECTED = [
    ("teacher_zero_shot", None, "teacher (zero-shot)", True, False),
    ("teacher_finetune", "teacher_finetuned.pt", None, True, False),
    ("teacher_selftrain", "teacher_adapted.pt", "teacher (CAST adapted)", True, False),
    ("distill", "student_distilled.pt", "student (CAST knowledge transfer)", False, False),
    ("refine", "student.pt", "student (CAST refined)", False, False),
    ("supervised_baseline", "student_supervised.pt", "student (supervised only)", False, True),
]


def test_the_stages_in_run_order_with_their_files_and_rows():
    found = [(s.name, s.checkpoint, s.row, s.teacher, s.baseline) for s in STAGES]
    assert found == EXPECTED
    assert [s.name for s in TEACHER_STAGES] == [n for n, *_, t, _ in EXPECTED if t]
    assert all(s.evaluated == (s.row is not None) for s in STAGES)
    assert all(s.description for s in STAGES if s.evaluated)
    assert [s.name for s in STAGES if not s.trains] == ["teacher_zero_shot"]


def test_pseudo_label_caches_keep_their_names():
    caches = [(s.name, s.pseudo_labels) for s in STAGES if s.pseudo_labels is not None]
    assert caches == [
        (TEACHER_FINETUNE.name, "pseudo_labels_teacher_finetune"),
        (TEACHER_SELFTRAIN.name, "pseudo_labels_teacher_adapted"),
    ]
    assert all(cache.startswith(PSEUDO_LABEL_PREFIX) for _, cache in caches)
    assert pseudo_label_teacher("pseudo_labels_teacher_adapted") == "teacher_adapted"


def test_no_other_module_spells_a_stage_name():
    package = Path(castseg.__file__).parent
    table = package / "pipeline" / "stage_table.py"
    for path in sorted(package.rglob("*.py")):
        if path == table:
            continue
        text = path.read_text(encoding="utf-8")
        for stage in STAGES:
            assert f'"{stage.name}"' not in text, f"{path} spells stage {stage.name!r}"
