"""Image datasets whose images are checked when the dataset is built and decoded one at a time.

Building a dataset checks every image it uses (header, size, end marker; `castseg.data.images`)
in one streaming pass with a progress bar (`checked_images`); `castseg.data.validation` says what
counts as broken and what `on_bad_record` does with it. The dataset keeps light records only
(`castseg.data.samples.PackedRecords`) and decodes one image per `__getitem__`, so it streams
from disk in DataLoader workers. Under "skip", an image that still fails to decode when it is
loaded (damage the header check cannot see) is replaced by the next loadable image and listed in
`skipped`; the flags marking such images live in shared memory, so failures inside DataLoader
workers are counted in the main process too.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from castseg.config import BadRecordPolicy
from castseg.data.images import check_image_file, load_rgb_image
from castseg.data.samples import ImageRecord, PackedRecords, Sample
from castseg.data.validation import BadRecordLog, BadRecordWarning, is_int
from castseg.progress_bar import progress_bar


class CheckedImageDataset(Dataset[Sample]):
    """Images kept as checked `ImageRecord`s and decoded one at a time (see the module doc).

    source: the annotation file or image folder the records come from (named in messages).
    image_ids: the usable images, in order; skipped: why records were dropped, one line each.
    """

    def __init__(
        self,
        source: Path,
        image_root: Path,
        records: Sequence[ImageRecord],
        skipped: list[str],
        on_bad_record: BadRecordPolicy,
    ) -> None:
        self.source = source
        self.image_root = image_root
        self.on_bad_record = on_bad_record
        self.records = PackedRecords(records)
        self.image_ids = [r.image_id for r in records]
        self._skipped_when_built = skipped
        self._failed_loads = torch.zeros(len(records), dtype=torch.bool)
        if on_bad_record == "skip":
            self._failed_loads.share_memory_()

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def skipped(self) -> list[str]:
        """Dropped records: those found when the dataset was built, then images that failed to
        decode when loaded (in this process or any DataLoader worker)."""
        failed = [self.records[int(i)] for i in self._failed_loads.nonzero().flatten()]
        return self._skipped_when_built + [
            f"{self.source}: image {r.image_id}: image file {self.image_root / r.file_name} "
            "could not be decoded when loaded; another image was used in its place"
            for r in failed
        ]

    def _load(self, index: int) -> tuple[ImageRecord, Tensor]:
        """Record and image [3, H, W] at `index`; under "skip", of the next loadable image."""
        count = len(self)
        if not 0 <= index < count:
            raise IndexError(f"index {index} out of range for {count} images of {self.source}")
        for step in range(count):
            position = (index + step) % count
            if self._failed_loads[position]:
                continue
            record = self.records[position]
            try:
                return record, self._decode_image(record)
            except (FileNotFoundError, ValueError) as err:
                message = f"{self.source}: image {record.image_id}: {err}"
                if self.on_bad_record == "error":
                    raise type(err)(message) from err
                self._failed_loads[position] = True
                warnings.warn(f"{message}; using the next image", BadRecordWarning, stacklevel=3)
        raise ValueError(f"{self.source}: none of the {count} images could be decoded")

    def _decode_image(self, record: ImageRecord) -> Tensor:
        path = self.image_root / record.file_name
        image = load_rgb_image(path)
        if tuple(image.shape[1:]) != (record.height, record.width):
            raise ValueError(
                f"image file {path} is {image.shape[1]}×{image.shape[2]} but was "
                f"{record.height}×{record.width} when the dataset was built"
            )
        return image


def checked_images(
    selected: Sequence[int],
    images: Mapping[int, dict],
    image_root: Path,
    log: BadRecordLog,
    progress: bool | str,
) -> Iterator[tuple[dict, int, int]]:
    """(entry, H, W) of each selected image whose file passes `check_image_file`, in order."""
    name = log.source.name
    desc = (
        f"checking the {progress} set ({name})" if isinstance(progress, str) else f"checking {name}"
    )
    bar = progress_bar(selected, desc=desc, unit="img", enabled=bool(progress), leave=False)
    for image_id in bar:
        entry = images[image_id]
        name = f"image {image_id}"
        if not isinstance(entry.get("file_name"), str):
            log.reject(name, "needs a 'file_name' string")
            continue
        path = image_root / entry["file_name"]
        try:
            height, width = check_image_file(path)
        except (FileNotFoundError, ValueError) as err:
            log.reject(name, str(err))
            continue
        listed = (entry.get("height", height), entry.get("width", width))
        if listed != (height, width):
            log.reject(
                name,
                f"the json says {listed[0]}×{listed[1]} (H×W) but {path} is {height}×{width}",
            )
            continue
        yield entry, height, width


def index_images(entries: Iterable[Any], source: Path, log: BadRecordLog) -> dict[int, dict]:
    """Image entries by id; entries without an integer id go to `log`, duplicate ids raise."""
    images: dict[int, dict] = {}
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or not is_int(entry.get("id")):
            log.reject(f"images[{position}]", "needs an integer 'id'")
            continue
        if entry["id"] in images:
            raise ValueError(f"{source}: image id {entry['id']} appears twice in 'images'")
        images[entry["id"]] = entry
    return images


def select_ids(image_ids: Sequence[int] | None, images: Mapping, source: Path) -> list[int]:
    """`image_ids` (all of `images` when None) as a list; ValueError naming unknown ids."""
    if image_ids is None:
        return list(images)
    unknown = [i for i in image_ids if i not in images]
    if unknown:
        raise ValueError(f"{source}: unknown image ids {unknown[:10]} ({len(unknown)} in all)")
    return list(image_ids)
