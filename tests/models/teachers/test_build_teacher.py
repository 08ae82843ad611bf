"""`build_teacher`: the config's teacher section → a teacher over the dataset's classes."""

import pytest
import torch

from castseg.config import TeacherConfig, TeacherSource
from castseg.data.coco import CategoryMap
from castseg.models.checkpoints import save_checkpoint
from castseg.models.student import build_student
from castseg.models.teachers import build_teacher
from castseg.models.teachers.ensemble import EnsembleTeacher
from castseg.models.teachers.grounded_sam2 import GroundedSAM2Teacher

CATEGORIES = CategoryMap.from_categories(
    [{"id": 3, "name": "disc"}, {"id": 7, "name": "ring"}], "test"
)
PROMPTS = ("person", "motorbike")


def grounded(detector, segmenter, **kwargs):
    fields = dict(detector=str(detector), segmenter=str(segmenter), prompts=PROMPTS, num_boxes=4)
    return TeacherSource(kind="grounded_sam2", **(fields | kwargs))


def test_grounded_sam2_from_local_directories(tiny_detector_dir, tiny_segmenter_dir):
    source = grounded(tiny_detector_dir, tiny_segmenter_dir, proj_dim=8)
    cfg = TeacherConfig(**vars(source))
    teacher = build_teacher(cfg, CATEGORIES)
    assert isinstance(teacher, GroundedSAM2Teacher) and teacher.training
    with torch.no_grad():
        pred = teacher.eval()(torch.rand(1, 3, 56, 84))
    assert pred.class_logits.shape == (1, 4, 3)
    assert pred.embeddings.shape[1] == 8


def test_wrong_prompt_count_and_missing_paths_name_the_key(tmp_path, tiny_segmenter_dir):
    cfg = TeacherConfig(kind="grounded_sam2", prompts=("person",))
    with pytest.raises(ValueError, match=r"teacher.prompts has 1 entries .* 2 classes"):
        build_teacher(cfg, CATEGORIES)
    with pytest.raises(ValueError, match="teacher.checkpoint: kind 'student_family' needs"):
        build_teacher(TeacherConfig(kind="student_family"), CATEGORIES)
    with pytest.raises(ValueError, match="teacher.model: kind 'hf_universal' needs"):
        build_teacher(TeacherConfig(kind="hf_universal"), CATEGORIES)
    with pytest.raises(ValueError, match=r"teacher.label_map entry 'disc' must look like"):
        build_teacher(
            TeacherConfig(kind="hf_universal", model="m", label_map=("disc",)), CATEGORIES
        )
    missing = grounded(tmp_path / "no_detector", tiny_segmenter_dir)
    with pytest.raises(FileNotFoundError, match="no_detector"):
        build_teacher(TeacherConfig(**vars(missing)), CATEGORIES)


def test_a_checkpoint_must_predict_the_datasets_classes(tmp_path):
    path = save_checkpoint(
        tmp_path / "teacher.pt",
        build_student("tiny", 2),
        category_map=CATEGORIES,
        image_size=(28, 28),
    )
    teacher = build_teacher(TeacherConfig(kind="student_family", checkpoint=str(path)), CATEGORIES)
    assert teacher.training
    other = CategoryMap.from_categories([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
    with pytest.raises(ValueError, match=r"teacher.checkpoint .* predicts \['disc', 'ring'\]"):
        build_teacher(TeacherConfig(kind="student_family", checkpoint=str(path)), other)


def test_ensemble_of_a_checkpoint_and_grounded_sam2(
    tmp_path, tiny_detector_dir, tiny_segmenter_dir
):
    path = save_checkpoint(
        tmp_path / "teacher.pt",
        build_student("tiny", 2),
        category_map=CATEGORIES,
        image_size=(28, 28),
    )
    members = (
        TeacherSource(kind="student_family", checkpoint=str(path)),
        grounded(tiny_detector_dir, tiny_segmenter_dir),
    )
    cfg = TeacherConfig(kind="ensemble", members=members, ensemble_top_k=6)
    teacher = build_teacher(cfg, CATEGORIES)
    assert isinstance(teacher, EnsembleTeacher)
    with torch.no_grad():
        pred = teacher.eval()(torch.rand(1, 3, 56, 84))
    assert pred.class_logits.shape == (1, 6, 3)
    with pytest.raises(ValueError, match="kind 'ensemble' needs at least two members"):
        build_teacher(TeacherConfig(kind="ensemble", members=members[:1]), CATEGORIES)
