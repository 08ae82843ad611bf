"""Model input sizes: ViT students need image sides that are multiples of their patch size."""

from __future__ import annotations

from torch import nn

from castseg.config.patch_grid import round_up


def input_multiple(model: nn.Module) -> int:
    """The number image sides must be a multiple of: the patch size of the model's ViT encoder
    (`model.encoder.patch_size`, 14 for the student), or 1 for a model without one."""
    return int(getattr(getattr(model, "encoder", None), "patch_size", 1))


def round_up_size(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """(H, W) rounded up to multiples of `multiple`: (512, 1024) at 14 → (518, 1036).

    Rounding up, not to the nearest, never shrinks an image the `ResizeView` fits inside it.
    """
    if len(size) != 2 or min(size) < 1 or multiple < 1:
        raise ValueError(f"need a positive (H, W) and multiple, got {size} and {multiple}")
    height, width = (round_up(side, multiple) for side in size)
    return height, width
