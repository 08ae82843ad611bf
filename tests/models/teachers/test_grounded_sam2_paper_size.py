"""The paper-size teacher, built on the meta device (shapes only, no memory, no download)."""

import json

import torch

from castseg.models.registry import build_model
from castseg.models.teachers.grounded_sam2_parts import DEFAULT_TRAINABLE, parameters_by_part
from castseg.models.teachers.paper_size import build_paper_teacher, placeholder_prompts

CITYSCAPES_THINGS = ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]


def count(parameters) -> int:
    return sum(p.numel() for p in parameters)


def test_paper_teacher_has_the_released_models_sizes():
    with torch.device("meta"):
        teacher = build_paper_teacher(CITYSCAPES_THINGS)
    # MM-Grounding-DINO-L (Swin-L + BERT-base) and the image path of SAM2.1 Hiera-L; the
    # paper's 568M also counts SAM2's video memory modules, which segmenting images never runs.
    assert 342.0e6 < count(teacher.detector.parameters()) < 343.0e6
    assert 216.5e6 < count(teacher.segmenter.parameters()) < 217.5e6
    parts = parameters_by_part(teacher)
    assert 195.0e6 < count(parts["detector_image_encoder"]) < 195.5e6  # Swin-L
    assert 109.0e6 < count(parts["detector_text_encoder"]) < 109.2e6  # BERT-base
    trainable = count(p for part in DEFAULT_TRAINABLE for p in parts[part])
    assert trainable == count(p for p in teacher.parameters() if p.requires_grad)
    assert 15e6 < trainable < 17e6
    assert teacher.segmenter_size == 1024 and teacher.detector_size == (800, 1333)


def test_paper_teacher_config_rebuilds_the_same_architecture():
    with torch.device("meta"):
        teacher = build_paper_teacher(CITYSCAPES_THINGS, num_boxes=50)
        rebuilt = build_model(json.loads(json.dumps(teacher.config_dict())))
    expected = {name: tuple(t.shape) for name, t in teacher.state_dict().items()}
    assert {name: tuple(t.shape) for name, t in rebuilt.state_dict().items()} == expected
    assert rebuilt.num_boxes == 50


def test_placeholder_prompt_has_the_detector_text_layout():
    prompts = placeholder_prompts(["person", "traffic_light"])
    assert prompts.input_ids.tolist() == [101, 2000, 1012, 2001, 1012, 102]
    assert prompts.prompts == ("person", "traffic light")
    assert prompts.token_positions(0) == [1] and prompts.token_positions(1) == [3]
