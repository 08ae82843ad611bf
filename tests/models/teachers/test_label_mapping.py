"""Matching model labels to dataset classes and pooling class logits per dataset class."""

import pytest
import torch

from castseg.models.teachers.label_mapping import (
    label_assignment,
    map_class_logits,
    resolve_label_ids,
)

# The model knows a class the dataset lacks ("truck") and orders its labels differently.
MODEL_LABELS = {0: "truck", 1: "person", 2: "car", 3: "traffic light"}
CLASSES = ["traffic_light", "person", "car"]


def test_label_map_overrides_pool_labels_and_errors_name_what_is_wrong():
    assert resolve_label_ids(CLASSES, MODEL_LABELS) == [[3], [1], [2]]
    pooled = resolve_label_ids(["vehicle", "Person"], MODEL_LABELS, {"vehicle": ["car", 0]})
    assert pooled == [[0, 2], [1]]
    with pytest.raises(ValueError, match=r"\['rider', 'bus'\] match no model label"):
        resolve_label_ids(["rider", "person", "bus"], MODEL_LABELS)
    with pytest.raises(ValueError, match="not dataset classes"):
        resolve_label_ids(["person"], MODEL_LABELS, {"rider": "person"})
    with pytest.raises(ValueError, match="model label 'bus' does not exist"):
        resolve_label_ids(["vehicle"], MODEL_LABELS, {"vehicle": "bus"})
    with pytest.raises(ValueError, match="model label id 7 does not exist"):
        resolve_label_ids(["vehicle"], MODEL_LABELS, {"vehicle": 7})
    with pytest.raises(ValueError, match="mapped to both 'vehicle' and 'car'"):
        resolve_label_ids(["vehicle", "car"], MODEL_LABELS, {"vehicle": ["car", "truck"]})


def test_pooled_logits_give_the_model_probabilities_summed_per_class():
    assignment = label_assignment([[0, 2], [1]], num_model_labels=4)
    expected_rows = [
        [True, False, True, False, False],
        [False, True, False, False, False],
        [False, False, False, True, True],
    ]
    assert assignment.tolist() == expected_rows
    logits = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    p = logits.softmax(-1)
    expected = torch.stack([p[..., 0] + p[..., 2], p[..., 1], p[..., 3] + p[..., 4]], dim=-1)
    torch.testing.assert_close(map_class_logits(logits, assignment).softmax(-1), expected)
