"""Each CAST stage trains with its own settings: stage 1 with the teacher's optimiser, batch and
L_pxl settings (`teacher.contrastive`, else `contrastive`), stages 2-3 with the student's."""

from types import SimpleNamespace

import pytest
from torch import nn

from castseg.config import apply_overrides, config_from_dict
from castseg.pipeline import stages
from castseg.pipeline.stages import CastStages
from castseg.training.trainer import StageRun


@pytest.fixture
def captured(monkeypatch, tmp_path):
    calls = {}

    def fake_train_stage(name, model, cfg, **settings):
        calls[name] = settings
        return StageRun(name, tmp_path / name, settings["steps"], 0.0)

    monkeypatch.setattr(stages, "train_stage", fake_train_stage)
    return calls


def run_teacher_and_student_stages(cfg, tmp_path):
    data = SimpleNamespace(labeled=[], categories=[{"id": 1, "name": "disc"}])
    cast = CastStages(cfg, data, tmp_path, progress=False)
    cast.teacher_finetune(nn.Linear(1, 1))
    cast.student_refinement(nn.Linear(1, 1))


def test_stage_one_uses_the_teachers_contrastive_settings(captured, tmp_path):
    base = config_from_dict({"data": {"labeled_annotations": "a.json"}})
    cfg = apply_overrides(
        base,
        [
            "contrastive.mode=uniform",
            "teacher.contrastive.mode=mask_only",
            "teacher.batch_size=3",
            "student.batch_size=5",
        ],
    )
    run_teacher_and_student_stages(cfg, tmp_path)
    teacher, student = captured["teacher_finetune"], captured["refine"]
    assert teacher["contrastive"].mode == "mask_only" and teacher["batch_size"] == 3
    assert student["contrastive"].mode == "uniform" and student["batch_size"] == 5
    assert teacher["optim"].lr != student["optim"].lr

    captured.clear()
    run_teacher_and_student_stages(apply_overrides(base, ["contrastive.score=sqrt"]), tmp_path)
    assert captured["teacher_finetune"]["contrastive"].score == "sqrt"  # null: the shared one
    assert captured["refine"]["contrastive"].score == "sqrt"


def test_refinement_runs_at_refine_lr_scale_times_the_students_rates(captured, tmp_path):
    base = config_from_dict({"data": {"labeled_annotations": "a.json"}})
    cfg = apply_overrides(
        base, ["student.lr_encoder=2e-4", "student.lr_decoder=1e-3", "student.refine_lr_scale=0.25"]
    )
    data = SimpleNamespace(labeled=[], categories=[{"id": 1, "name": "disc"}])
    cast = CastStages(cfg, data, tmp_path, progress=False)
    cast.student_refinement(nn.Linear(1, 1))
    cast.train("distill", nn.Linear(1, 1), stages.StageWeights(1.0, 0.2), steps=1, teacher=False)
    assert captured["refine"]["optim"].lr == pytest.approx({"encoder": 5e-5, "decoder": 2.5e-4})
    assert captured["distill"]["optim"].lr == pytest.approx({"encoder": 2e-4, "decoder": 1e-3})
