"""Every teacher keeps the model contract (`castseg.models.protocol`), and its checkpoint records
the statistics it normalises its input with."""

import pytest
import torch
from transformers import EomtConfig, EomtForUniversalSegmentation

from castseg.data.coco import CategoryMap
from castseg.models.checkpoints import load_checkpoint, save_checkpoint
from castseg.models.encoder import IMAGENET_MEAN, IMAGENET_STD
from castseg.models.protocol import Embedder, SegmentationModel
from castseg.models.registry import build_model
from castseg.models.student import build_student
from castseg.models.teachers.ensemble import EnsembleTeacher
from castseg.models.teachers.grounded_sam2 import GroundedSAM2Teacher
from castseg.models.teachers.hf_universal import HFUniversalTeacher

CLASSES = ["person", "motorcycle", "traffic_light"]
CATEGORIES = CategoryMap(ids=(1, 2, 3), names=tuple(CLASSES))
IMAGENET = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
OTHER = {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}


def eomt_teacher(normalisation=None) -> HFUniversalTeacher:
    torch.manual_seed(0)
    config = EomtConfig(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        num_blocks=1,
        num_queries=4,
        num_register_tokens=1,
        id2label={0: "person", 1: "motorcycle", 2: "traffic light"},
    )
    return HFUniversalTeacher(
        EomtForUniversalSegmentation(config),
        CLASSES,
        [[0], [1], [2]],
        proj_dim=8,
        normalisation=normalisation,
    )


@pytest.fixture(scope="module")
def grounded(tiny_detector_dir, tiny_segmenter_dir) -> GroundedSAM2Teacher:
    """The tiny GroundedSAM2 teacher: its two processors normalise differently (see conftest)."""
    return GroundedSAM2Teacher.from_pretrained(
        str(tiny_detector_dir), str(tiny_segmenter_dir), CLASSES, num_boxes=5, proj_dim=8
    )


def test_every_teacher_is_a_segmentation_model_and_those_that_can_embed_are_embedders(
    grounded,
) -> None:
    hf = eomt_teacher()
    ensemble = EnsembleTeacher([build_student("tiny", 3), hf])
    for teacher in (grounded, hf, ensemble):
        assert isinstance(teacher, SegmentationModel)
    assert isinstance(grounded, Embedder)
    assert not isinstance(hf, Embedder) and not isinstance(ensemble, Embedder)


def test_input_normalisation_is_each_teachers_own(grounded) -> None:
    assert eomt_teacher().input_normalisation == IMAGENET
    assert eomt_teacher(OTHER).input_normalisation == OTHER
    assert grounded.input_normalisation is None  # detector and SAM2 statistics differ
    same = dict(grounded.config_dict(), normalisation={"detector": OTHER, "segmenter": OTHER})
    assert build_model(same).input_normalisation == OTHER
    student = build_student("tiny", 3)
    assert EnsembleTeacher([student, eomt_teacher()]).input_normalisation == IMAGENET
    assert EnsembleTeacher([student, eomt_teacher(OTHER)]).input_normalisation is None


def test_a_checkpoint_records_the_models_own_normalisation(tmp_path) -> None:
    path = save_checkpoint(
        tmp_path / "t.pt", eomt_teacher(OTHER), category_map=CATEGORIES, image_size=(32, 32)
    )
    assert torch.load(path, weights_only=True)["normalization"] == OTHER
    assert load_checkpoint(path).normalization == OTHER


def test_a_model_whose_parts_normalise_differently_records_none(grounded, tmp_path) -> None:
    path = save_checkpoint(
        tmp_path / "g.pt", grounded, category_map=CATEGORIES, image_size=(32, 32)
    )
    assert torch.load(path, weights_only=True)["normalization"] is None
    loaded = load_checkpoint(path)
    assert loaded.normalization is None
    assert loaded.model.config_dict()["normalisation"] == grounded.normalisation
