"""Image sides against a ViT's patch grid: the one place their arithmetic lives.

The student's DINOv2 encoder cuts images into 14 × 14 patches (`castseg.models.sizes`, and every
published DINOv2), so data.image_size must be a multiple of it. An encoder given by hub id or
folder has its own config: `castseg.preflight` checks the size against it. The config check,
the pre-flight checks, the encoder and the deploy input sizes all call these functions.
"""

from __future__ import annotations

from collections.abc import Sequence

STUDENT_PATCH_SIZE = 14


def off_grid(size: Sequence[int], multiple: int) -> bool:
    """Whether a side of `size` is not a multiple of `multiple`."""
    return any(side % multiple for side in size)


def round_up(side: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is at least `side`."""
    return -(-side // multiple) * multiple


def nearest_sizes(size: Sequence[int], multiple: int = STUDENT_PATCH_SIZE) -> list[list[int]]:
    """The multiples of `multiple` just below and just above `size`, side by side."""
    below = [max(multiple, side // multiple * multiple) for side in size]
    above = [round_up(side, multiple) for side in size]
    return [below] if below == above else [below, above]


def image_size_problem(size: Sequence[int], multiple: int, of_what: str) -> str | None:
    """Why data.image_size `size` does not fit a patch grid of `multiple` (`of_what` names the
    grid, e.g. "the student's patch size 14"), with the nearest sizes that do; None when it
    fits."""
    if not off_grid(size, multiple):
        return None
    valid = " or ".join(str(nearest) for nearest in nearest_sizes(size, multiple))
    return (
        f"data.image_size: {list(size)} is not a multiple of {of_what}; nearest valid sizes: "
        f"{valid}"
    )
