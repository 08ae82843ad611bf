"""COCO-format datasets: the json file, category mapping, labeled images with instance masks,
unlabeled images.

Image paths are `image_root / file_name`. When no image_root is given it is the `images/` folder
next to the annotation file if that folder exists, else the annotation file's own folder (the
layout `generate_world` writes: `<split>/instances.json` and `<split>/images/`).

Both datasets check every image (`castseg.data.checked_images`) and every annotation
(`castseg.data.coco_annotations`) of the images they use when they are built, keep light records
only and decode one image and its masks per `__getitem__`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from castseg.config import BadRecordPolicy
from castseg.data.checked_images import (
    CheckedImageDataset,
    checked_images,
    index_images,
    select_ids,
)
from castseg.data.coco_annotations import (
    annotation_json,
    check_annotation,
    decode_instances,
    group_annotations,
)
from castseg.data.images import IMAGE_SUFFIXES
from castseg.data.samples import ImageRecord, Sample
from castseg.data.validation import BadRecordLog, is_int


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
            if not isinstance(c, Mapping) or not is_int(c.get("id")):
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
        images = index_images(data["images"], self.annotation_file, log)
        selected = select_ids(image_ids, images, self.annotation_file)
        grouped = group_annotations(
            data.get("annotations", []), images, selected, self.categories, log
        )
        records = []
        for entry, height, width in checked_images(selected, images, root, log, progress):
            annotations = []
            for ann in grouped.get(entry["id"], []):
                checked = check_annotation(ann, entry["id"], height, width, self.categories, log)
                if checked is not None:
                    annotations.append(checked)
            records.append(
                ImageRecord(entry["id"], entry["file_name"], height, width, tuple(annotations))
            )
        super().__init__(self.annotation_file, root, records, log.finish(), on_bad_record)

    def __getitem__(self, index: int) -> Sample:
        record, image = self._load(index)
        return Sample(image, decode_instances(record), record.image_id, record.file_name)

    def ground_truth(self) -> dict[str, Any]:
        """The images and annotations this dataset kept, as a COCO json dict for scoring.

        Annotations as `annotation_json` writes them; categories with their ids and names.
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
            annotations += [
                annotation_json(ann, record, self.categories) for ann in record.annotations
            ]
        categories = [
            {"id": i, "name": n}
            for i, n in zip(self.categories.ids, self.categories.names, strict=True)
        ]
        return {"images": images, "annotations": annotations, "categories": categories}


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
        images = index_images(entries, source, log)
        selected = select_ids(image_ids, images, source)
        records = [
            ImageRecord(entry["id"], entry["file_name"], height, width)
            for entry, height, width in checked_images(selected, images, root, log, progress)
        ]
        super().__init__(source, root, records, log.finish(), on_bad_record)

    def __getitem__(self, index: int) -> Sample:
        record, image = self._load(index)
        return Sample(image, None, record.image_id, record.file_name)
