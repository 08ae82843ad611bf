"""Teachers' pretrained folders whose weights do not all fit are refused, naming folder and key.

The folders are the hub-layout fixtures of conftest (MM-Grounding-DINO like
openmmlab-community/mm_grounding_dino_large_all, SAM2 like facebook/sam2.1-hiera-large, EoMT as
transformers saves the tue-mps repositories) with one weight edited.
"""

import pytest
import torch

from castseg.models.pretrained import WeightsMismatchError
from castseg.models.teachers.grounded_sam2 import GroundedSAM2Teacher
from castseg.models.teachers.hf_universal import HFUniversalTeacher

CLASSES = ["person", "car"]


def test_a_detector_missing_a_layer_is_refused(
    tiny_detector_dir, tiny_segmenter_dir, edited_weights
):
    folder = edited_weights(tiny_detector_dir, drop=("model.decoder.layers.0.fc1.weight",))
    with pytest.raises(WeightsMismatchError) as caught:
        GroundedSAM2Teacher.from_pretrained(str(folder), str(tiny_segmenter_dir), CLASSES)
    message = str(caught.value)
    assert f"the detector '{folder}'" in message
    assert "missing 1 key (model.decoder.layers.0.fc1.weight)" in message


def test_a_segmenter_with_a_misshaped_weight_is_refused(
    tiny_detector_dir, tiny_segmenter_dir, edited_weights
):
    folder = edited_weights(tiny_segmenter_dir, grow=("mask_decoder.iou_token.weight",))
    with pytest.raises(WeightsMismatchError) as caught:
        GroundedSAM2Teacher.from_pretrained(str(tiny_detector_dir), str(folder), CLASSES)
    message = str(caught.value)
    assert f"the segmenter '{folder}'" in message
    assert "e.g. mask_decoder.iou_token.weight: (2, 32) in the weights, (1, 32)" in message


def test_the_video_memory_weights_of_a_sam2_video_checkpoint_are_dropped_in_one_line(
    tiny_detector_dir, tiny_segmenter_dir, caplog
):
    # the one exception to the check: transformers drops them itself (Sam2Model's
    # _keys_to_ignore_on_load_unexpected), castseg says so in one log line
    with caplog.at_level("INFO", logger="castseg.models.teachers.sources"):
        GroundedSAM2Teacher.from_pretrained(
            str(tiny_detector_dir), str(tiny_segmenter_dir), CLASSES, num_boxes=5
        )
    dropped = [record.getMessage() for record in caplog.records]
    assert len(dropped) == 1 and "the video memory weights" in dropped[0]


def test_a_universal_segmentation_model_with_an_extra_weight_is_refused(
    make_tiny_eomt, edited_weights
):
    eomt = make_tiny_eomt({0: "person", 1: "car"}, seed=0)
    folder = edited_weights(eomt, add={"extra_head.weight": torch.zeros(2, 32)})
    with pytest.raises(WeightsMismatchError) as caught:
        HFUniversalTeacher.from_pretrained(str(folder), CLASSES)
    message = str(caught.value)
    assert f"the model '{folder}'" in message
    assert "unexpected 1 key (extra_head.weight)" in message
