"""The model contract (`castseg.models.protocol`): the student keeps it; shared statistics."""

import pytest
from torch import nn

from castseg.models.encoder import IMAGENET_MEAN, IMAGENET_STD
from castseg.models.protocol import Embedder, SegmentationModel, common_normalisation
from castseg.models.student import Student, build_student

IMAGENET = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def test_the_student_is_a_segmentation_model_and_an_embedder() -> None:
    student = build_student("tiny", 3)
    assert isinstance(student, Student)
    assert isinstance(student, SegmentationModel) and isinstance(student, Embedder)
    assert student.input_normalisation == IMAGENET


def test_a_module_without_the_methods_keeps_neither_contract() -> None:
    class Whole(nn.Module):
        def forward(self, images):
            return images

    assert not isinstance(Whole(), SegmentationModel)
    assert not isinstance(Whole(), Embedder)


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([IMAGENET], IMAGENET),
        ([IMAGENET, {"mean": tuple(IMAGENET_MEAN), "std": tuple(IMAGENET_STD)}], IMAGENET),
        ([IMAGENET, {"mean": [0.5, 0.5, 0.5], "std": list(IMAGENET_STD)}], None),
        ([IMAGENET, None], None),
        ([None], None),
    ],
)
def test_common_normalisation_is_the_shared_statistics_or_none(parts, expected) -> None:
    assert common_normalisation(parts) == expected
