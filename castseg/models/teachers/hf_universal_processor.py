"""What a universal-segmentation model's image processor does, read from its saved settings.

`HFUniversalTeacher` normalises and resizes tensors itself, as the model's processor would: these
read the processor's mean and std (in [0, 1] pixel units) and its resize from the folder the model
is loaded from, without instantiating the processor.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

from castseg.models.encoder import IMAGENET_MEAN, IMAGENET_STD
from castseg.models.teachers.sources import processor_normalisation, processor_settings


def unit_range_normalisation(source: str) -> dict[str, list[float]]:
    """Mean and std, in [0, 1] pixel units, of the image processor saved with `source`.

    The processor maps 0–255 pixels x to (x · rescale_factor − mean) / std; for images in [0, 1]
    that is (image − mean') / std' with mean' = mean / (255 · rescale_factor), likewise std'.
    Without a processor config, warns and uses the ImageNet statistics (the default of both
    Mask2Former's and EoMT's processors).
    """
    try:
        settings = processor_settings(source, "model")
    except OSError:
        warnings.warn(
            f"{source} has no image processor config (preprocessor_config.json); "
            "normalising with the ImageNet mean and std",
            stacklevel=3,
        )
        return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    if settings.get("do_normalize", True):
        stats = processor_normalisation(settings, source, "model")
    else:
        stats = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    rescale = settings.get("rescale_factor", 1 / 255) if settings.get("do_rescale", True) else 1.0
    return {key: [v / (255.0 * rescale) for v in values] for key, values in stats.items()}


def processor_resize(source: str) -> dict[str, int] | None:
    """The `size` of the image processor saved with `source` when it resizes; None without a
    processor config or with do_resize false."""
    try:
        settings = processor_settings(source, "model")
    except OSError:
        return None
    if not settings.get("do_resize", True) or not settings.get("size"):
        return None
    return checked_resize(settings["size"], f"the image processor of {source!r}")


def checked_resize(size: Mapping[str, int], where: str = "resize") -> dict[str, int]:
    """`size` as {"shortest_edge"[, "longest_edge"]} or {"height", "width"}, else ValueError."""
    keys = set(size)
    if keys not in ({"shortest_edge"}, {"shortest_edge", "longest_edge"}, {"height", "width"}):
        raise ValueError(
            f"{where}: size must have shortest_edge (and longest_edge) or height and width, "
            f"got {dict(size)}"
        )
    if min(int(v) for v in size.values()) < 1:
        raise ValueError(f"{where}: size must be positive, got {dict(size)}")
    return {key: int(value) for key, value in size.items()}
