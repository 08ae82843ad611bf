"""One image as the datasets hand it out, and the collate function that keeps samples intact."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from castseg.structures import Instances


@dataclass
class Sample:
    """An image with its targets.

    image: [3, H, W] float RGB in [0, 1]. instances: the ground truth of a labeled image, None for
    an unlabeled one. image_id: the COCO image id (the index for a plain folder of images).
    file_name: the image path relative to the dataset's image root.
    """

    image: Tensor
    instances: Instances | None
    image_id: int
    file_name: str

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return int(self.image.shape[1]), int(self.image.shape[2])


def collate_samples(samples: Sequence[Sample]) -> list[Sample]:
    """DataLoader `collate_fn` that leaves the samples as a list.

    Images of a batch may differ in size and carry different numbers of instances, so stacking is
    left to the views that resize them.
    """
    return list(samples)
