"""COCO-format datasets: category mapping, labeled images with instance masks, unlabeled images.

Image paths are `image_root / file_name`. When no image_root is given it is the `images/` folder
next to the annotation file if that folder exists, else the annotation file's own folder (the
layout `generate_world` writes: `<split>/instances.json` and `<split>/images/`).

Both datasets check every image (header, size, end marker; `castseg.data.images`) and every
annotation of the images they use when they are built, in one streaming pass with a progress bar;
`castseg.data.validation` says what counts as broken and what `on_bad_record` does with it. They
keep light records only (`castseg.data.samples.PackedRecords`) and decode one image and its masks
per `__getitem__`, so they stream from disk in DataLoader workers. Under "skip", an image that
still fails to decode when it is loaded (damage the header check cannot see) is replaced by the
next loadable image and listed in `skipped`; the flags marking such images live in shared memory,
so failures inside DataLoader workers are counted in the main process too.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import Tensor
from torch.utils.data import Dataset

from castseg.config import BadRecordPolicy
from castseg.data.images import IMAGE_SUFFIXES, check_image_file, load_rgb_image
from castseg.data.samples import AnnotationRecord, ImageRecord, PackedRecords, Sample
from castseg.data.validation import (
    BadRecordLog,
    BadRecordWarning,
    CheckedSegmentation,
    check_segmentation,
)
from castseg.progress_bar import progress_bar
from castseg.structures import Instances


def load_coco_json(annotation_file: str | Path) -> dict:
    """Read a COCO json; the error names the file when it is missing, broken or not COCO."""
    path = Path(annotation_file)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"annotation file {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"annotation file {path} has no 'images' list; is it COCO format?")
    for key in ("annotations", "categories"):
        if not isinstance(data.get(key, []), list):
            raise ValueError(f"annotation file {path}: '{key}' must be a list")
    return data


def default_image_root(annotation_file: str | Path) -> Path:
    """`images/` next to the annotation file if it exists, else the annotation file's folder."""
    folder = Path(annotation_file).parent
    return folder / "images" if (folder / "images").is_dir() else folder


@dataclass(frozen=True)
class CategoryMap:
    """Contiguous class index ↔ COCO category id ↔ name; indices follow the sorted category ids."""

    ids: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def from_categories(cls, categories: Iterable[Mapping], source: str | Path = "") -> CategoryMap:
        """From the `categories` list of a COCO json (`source` names it in errors)."""
        records = list(categories)
        for position, c in enumerate(records):
            if not isinstance(c, Mapping) or not _is_int(c.get("id")):
                raise ValueError(f"{source}: categories[{position}] needs an integer 'id'")
        records.sort(key=lambda c: c["id"])
        ids = tuple(int(c["id"]) for c in records)
        if len(set(ids)) != len(ids):
            raise ValueError(f"{source}: duplicate category ids in {list(ids)}")
        return cls(ids, tuple(str(c.get("name", c["id"])) for c in records))

    @classmethod
    def from_coco(cls, annotation_file: str | Path) -> CategoryMap:
        return cls.from_categories(
            load_coco_json(annotation_file).get("categories", []), annotation_file
        )

    def __len__(self) -> int:
        return len(self.ids)

    def to_contiguous(self, category_id: int) -> int:
        try:
            return self.ids.index(category_id)
        except ValueError:
            raise ValueError(
                f"unknown category id {category_id}; known ids: {list(self.ids)}"
            ) from None

    def to_coco(self, index: int) -> int:
        if not 0 <= index < len(self.ids):
            raise ValueError(f"class index {index} out of range [0, {len(self.ids)})")
        return self.ids[index]


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


class CocoInstanceDataset(CheckedImageDataset):
    """Labeled images of a COCO json with their instance masks.

    Masks are decoded from polygons or RLE (compressed or not). Crowd annotations (iscrowd=1) are
    not instances: their union becomes `Instances.ignore`, which is None when an image has no crowd.
    image_ids: the images to use, in that order (default: all images in file order).
    on_bad_record: "error" or "skip" (`castseg.data.validation`); progress: show a progress bar
    while the images are checked (a string names the set on it, e.g. "labeled").
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_root: str | Path | None = None,
        image_ids: Sequence[int] | None = None,
        *,
        on_bad_record: BadRecordPolicy = "error",
        progress: bool | str = False,
    ) -> None:
        self.annotation_file = Path(annotation_file)
        data = load_coco_json(self.annotation_file)
        root = Path(image_root) if image_root else default_image_root(annotation_file)
        self.categories = CategoryMap.from_categories(data.get("categories", []), annotation_file)
        log = BadRecordLog(self.annotation_file, on_bad_record)
        images = _index_images(data["images"], self.annotation_file, log)
        selected = _select_ids(image_ids, images, self.annotation_file)
        grouped = self._group_annotations(data.get("annotations", []), images, selected, log)
        records = []
        for entry, height, width in _checked_images(selected, images, root, log, progress):
            annotations = []
            for ann in grouped.get(entry["id"], []):
                checked = self._check_annotation(ann, entry["id"], height, width, log)
                if checked is not None:
                    annotations.append(checked)
            records.append(
                ImageRecord(entry["id"], entry["file_name"], height, width, tuple(annotations))
            )
        super().__init__(self.annotation_file, root, records, log.finish(), on_bad_record)

    def __getitem__(self, index: int) -> Sample:
        record, image = self._load(index)
        height, width = record.height, record.width
        crowd = torch.tensor([a.crowd for a in record.annotations], dtype=torch.bool)
        if record.annotations:
            rles = [a.segmentation.rle(height, width) for a in record.annotations]
            decoded = mask_utils.decode(rles)  # [H, W, N] uint8 0/1, column-major
            planes = torch.from_numpy(decoded.transpose(2, 1, 0).view(bool)).transpose(1, 2)
        else:
            planes = torch.zeros(0, height, width, dtype=torch.bool)
        labels = [a.label for a in record.annotations if not a.crowd]
        instances = Instances(
            planes[~crowd].contiguous(),
            torch.tensor(labels, dtype=torch.long),
            ignore=planes[crowd].any(0) if crowd.any() else None,
        )
        return Sample(image, instances, record.image_id, record.file_name)

    def ground_truth(self) -> dict[str, Any]:
        """The images and annotations this dataset kept, as a COCO json dict for scoring.

        Segmentations are polygons or RLE with string counts; area and bbox as in the json
        (else from the mask); categories with their ids and names.
        """
        images, annotations = [], []
        for index in range(len(self)):
            record = self.records[index]
            images.append(
                {
                    "id": record.image_id,
                    "file_name": record.file_name,
                    "height": record.height,
                    "width": record.width,
                }
            )
            for ann in record.annotations:
                annotations.append(
                    {
                        "id": ann.annotation_id,
                        "image_id": record.image_id,
                        "category_id": self.categories.to_coco(ann.label),
                        "iscrowd": int(ann.crowd),
                        "segmentation": _segmentation_json(ann.segmentation, record),
                        "area": ann.area,
                        "bbox": list(ann.box),
                    }
                )
        categories = [
            {"id": i, "name": n}
            for i, n in zip(self.categories.ids, self.categories.names, strict=True)
        ]
        return {"images": images, "annotations": annotations, "categories": categories}

    def _group_annotations(
        self,
        annotations: list,
        images: Mapping[int, dict],
        selected: Sequence[int],
        log: BadRecordLog,
    ) -> dict[int, list[dict]]:
        """Annotations of the selected images by image id; broken references go to `log`."""
        wanted = set(selected)
        grouped: dict[int, list[dict]] = {}
        for position, ann in enumerate(annotations):
            if not isinstance(ann, dict) or not _is_int(ann.get("id")):
                log.reject(f"annotations[{position}]", "needs an integer 'id'")
                continue
            image_id, category_id = ann.get("image_id"), ann.get("category_id")
            if not _is_int(image_id) or image_id not in images:
                log.reject(
                    f"annotation {ann['id']}", f"names image id {image_id!r}, not in 'images'"
                )
            elif image_id not in wanted:
                continue
            elif category_id not in self.categories.ids:
                log.reject(
                    f"annotation {ann['id']} of image {image_id}",
                    f"names category id {category_id!r}; known ids: {list(self.categories.ids)}",
                )
            else:
                grouped.setdefault(image_id, []).append(ann)
        return grouped

    def _check_annotation(
        self, ann: dict, image_id: int, height: int, width: int, log: BadRecordLog
    ) -> AnnotationRecord | None:
        """The annotation's record, or None when it is broken or empty (reported to `log`)."""
        name = f"annotation {ann['id']} of image {image_id}"
        try:
            segmentation = check_segmentation(ann.get("segmentation"), height, width)
        except ValueError as err:
            log.reject(name, str(err))
            return None
        if segmentation.area == 0:
            log.drop(name, f"zero-area mask ({_why_empty(ann.get('segmentation'))}), dropped")
            return None
        area, box = ann.get("area"), ann.get("bbox")
        if isinstance(box, list) and len(box) == 4 and all(_is_finite(v) for v in box):
            x, y, w, h = (float(v) for v in box)
            box = (x, y, w, h)
        else:
            box = segmentation.box
        return AnnotationRecord(
            annotation_id=ann["id"],
            label=self.categories.to_contiguous(ann["category_id"]),
            crowd=bool(ann.get("iscrowd", 0)),
            segmentation=segmentation,
            area=float(area) if _is_finite(area) else float(segmentation.area),
            box=box,
        )


class UnlabeledImageDataset(CheckedImageDataset):
    """Images without targets (samples have instances=None).

    source: a COCO json (annotations ignored; images under image_root as in CocoInstanceDataset)
    or a folder whose png/jpg/jpeg files, sorted by name, get ids 0, 1, 2, ...
    on_bad_record and progress: as for CocoInstanceDataset.
    """

    def __init__(
        self,
        source: str | Path,
        image_ids: Sequence[int] | None = None,
        image_root: str | Path | None = None,
        *,
        on_bad_record: BadRecordPolicy = "error",
        progress: bool | str = False,
    ) -> None:
        source = Path(source)
        log = BadRecordLog(source, on_bad_record)
        if source.is_dir():
            if image_root is not None:
                raise ValueError(f"image_root applies to a COCO json source, not folder {source}")
            files = sorted(p.name for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ValueError(f"folder {source} holds no {'/'.join(IMAGE_SUFFIXES)} images")
            entries = [{"id": i, "file_name": name} for i, name in enumerate(files)]
            root = source
        else:
            entries = load_coco_json(source)["images"]
            root = Path(image_root) if image_root else default_image_root(source)
        images = _index_images(entries, source, log)
        selected = _select_ids(image_ids, images, source)
        records = [
            ImageRecord(entry["id"], entry["file_name"], height, width)
            for entry, height, width in _checked_images(selected, images, root, log, progress)
        ]
        super().__init__(source, root, records, log.finish(), on_bad_record)

    def __getitem__(self, index: int) -> Sample:
        record, image = self._load(index)
        return Sample(image, None, record.image_id, record.file_name)


def _why_empty(raw: Any) -> str:
    """What makes a segmentation that passed `check_segmentation` cover no pixel."""
    if isinstance(raw, list):
        if not raw:
            return "no polygon: the annotation has a box only"
        points = min(len(polygon) // 2 for polygon in raw)
        if points < 3:
            return f"a polygon of {points} point(s); a polygon needs at least 3"
        return "its polygons cover no pixel: outside the image, or degenerate"
    return "the RLE has no foreground pixel"


def _checked_images(
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


def _index_images(entries: Iterable[Any], source: Path, log: BadRecordLog) -> dict[int, dict]:
    """Image entries by id; entries without an integer id go to `log`, duplicate ids raise."""
    images: dict[int, dict] = {}
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or not _is_int(entry.get("id")):
            log.reject(f"images[{position}]", "needs an integer 'id'")
            continue
        if entry["id"] in images:
            raise ValueError(f"{source}: image id {entry['id']} appears twice in 'images'")
        images[entry["id"]] = entry
    return images


def _select_ids(image_ids: Sequence[int] | None, images: Mapping, source: Path) -> list[int]:
    if image_ids is None:
        return list(images)
    unknown = [i for i in image_ids if i not in images]
    if unknown:
        raise ValueError(f"{source}: unknown image ids {unknown[:10]} ({len(unknown)} in all)")
    return list(image_ids)


def _segmentation_json(segmentation: CheckedSegmentation, record: ImageRecord) -> Any:
    if isinstance(segmentation.data, bytes):
        return {"size": [record.height, record.width], "counts": segmentation.data.decode()}
    return [part.tolist() for part in segmentation.data]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)
