"""The patch-grid arithmetic that the config check, the pre-flight checks, the student's encoder
and the deploy input sizes share."""

import pytest

from castseg.config.patch_grid import (
    STUDENT_PATCH_SIZE,
    image_size_problem,
    nearest_sizes,
    off_grid,
    round_up,
)
from castseg.deploy.input_size import round_up_size
from castseg.models.student import build_student


def test_sides_on_and_off_the_grid():
    assert STUDENT_PATCH_SIZE == 14
    assert not off_grid((518, 1036), 14) and off_grid((518, 1030), 14)
    assert [round_up(side, 14) for side in (1, 14, 15, 512)] == [14, 14, 28, 518]
    assert round_up_size((512, 1024), 14) == (518, 1036)


def test_nearest_sizes_and_the_message_naming_them():
    assert nearest_sizes((250, 250)) == [[238, 238], [252, 252]]
    assert nearest_sizes((5, 28)) == [[14, 28]]
    assert image_size_problem((518, 1036), 14, "anything") is None
    assert image_size_problem((250, 250), 14, "the student's patch size 14") == (
        "data.image_size: [250, 250] is not a multiple of the student's patch size 14; "
        "nearest valid sizes: [238, 238] or [252, 252]"
    )


def test_the_encoder_names_the_padded_size():
    encoder = build_student("tiny", 2).encoder
    assert encoder.patch_grid(28, 56) == (2, 4)
    with pytest.raises(ValueError, match=r"got image shape 15x28 \(resize or pad, e.g. to 28x28\)"):
        encoder.patch_grid(15, 28)
