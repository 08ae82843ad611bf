"""One image as the datasets keep it (light records, packed) and as they hand it out (Sample).

A dataset holds one `ImageRecord` per image: ids, file name, size and its checked annotations
in compact form (compressed RLE or polygons), never pixels or decoded masks. `PackedRecords`
pickles them into a single byte array: DataLoader workers share it copy-on-write, where a list
of Python objects would be copied page by page into every worker as reference counts change.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from castseg.data.validation import CheckedSegmentation
from castseg.structures import Instances


@dataclass(frozen=True)
class AnnotationRecord:
    """One checked annotation. label: contiguous class index; crowd: COCO iscrowd.

    area and box (x, y, w, h) are the json's own values when it has them (COCO evaluation
    buckets objects by the json's area), else those of the mask.
    """

    annotation_id: int
    label: int
    crowd: bool
    segmentation: CheckedSegmentation
    area: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class ImageRecord:
    """One checked image: height and width as read from its file header."""

    image_id: int
    file_name: str
    height: int
    width: int
    annotations: tuple[AnnotationRecord, ...] = ()


class PackedRecords:
    """Image records pickled into one uint8 array, unpickled one at a time on access."""

    def __init__(self, records: Iterable[ImageRecord]) -> None:
        blobs = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in records]
        self._offsets = np.cumsum([0] + [len(b) for b in blobs], dtype=np.int64)
        self._buffer = np.frombuffer(b"".join(blobs), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> ImageRecord:
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} out of range for {len(self)} records")
        index %= len(self)
        start, end = self._offsets[index], self._offsets[index + 1]
        return pickle.loads(self._buffer[start:end].tobytes())

    @property
    def nbytes(self) -> int:
        """Size of the packed records in bytes."""
        return int(self._buffer.nbytes + self._offsets.nbytes)


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
