"""COCO-format datasets: category mapping, labeled images with instance masks, unlabeled images.

Image paths are `image_root / file_name`. When no image_root is given it is the `images/` folder
next to the annotation file if that folder exists, else the annotation file's own folder (the
layout `generate_world` writes: `<split>/instances.json` and `<split>/images/`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils
from torch import Tensor
from torch.utils.data import Dataset

from castseg.data.samples import Sample
from castseg.structures import Instances

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_coco_json(annotation_file: str | Path) -> dict:
    """Read a COCO json; the error names the file when it is missing, broken or has no images."""
    path = Path(annotation_file)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"annotation file {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"annotation file {path} has no 'images' list; is it COCO format?")
    return data


def default_image_root(annotation_file: str | Path) -> Path:
    """`images/` next to the annotation file if it exists, else the annotation file's folder."""
    folder = Path(annotation_file).parent
    return folder / "images" if (folder / "images").is_dir() else folder


def load_rgb_image(path: Path, image_id: int | str = "?") -> Tensor:
    """Image file as [3, H, W] float RGB in [0, 1]; EXIF rotation applied, alpha dropped."""
    try:
        with Image.open(path) as image:
            rgb = ImageOps.exif_transpose(image).convert("RGB")
    except FileNotFoundError as err:
        raise FileNotFoundError(f"image file {path} (image id {image_id}) does not exist") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image file {path} (image id {image_id}): {err}") from err
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float().div(255.0)


@dataclass(frozen=True)
class CategoryMap:
    """Contiguous class index ↔ COCO category id ↔ name; indices follow the sorted category ids."""

    ids: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def from_categories(cls, categories: Iterable[Mapping], source: str | Path = "") -> CategoryMap:
        """From the `categories` list of a COCO json (`source` names it in errors)."""
        records = sorted(categories, key=lambda c: c["id"])
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


class CocoInstanceDataset(Dataset[Sample]):
    """Labeled images of a COCO json with their instance masks.

    Masks are decoded from polygons or RLE (compressed or not). Crowd annotations (iscrowd=1) are
    not instances: their union becomes `Instances.ignore`, which is None when an image has no crowd.
    image_ids: the images to use, in that order (default: all images in file order).
    """

    def __init__(
        self,
        annotation_file: str | Path,
        image_root: str | Path | None = None,
        image_ids: Sequence[int] | None = None,
    ) -> None:
        self.annotation_file = Path(annotation_file)
        data = load_coco_json(self.annotation_file)
        self.image_root = Path(image_root) if image_root else default_image_root(annotation_file)
        self.categories = CategoryMap.from_categories(data.get("categories", []), annotation_file)
        self._images = _index_images(data["images"], self.annotation_file)
        self._annotations: dict[int, list[dict]] = {image_id: [] for image_id in self._images}
        for ann in data.get("annotations", []):
            ann_id = ann.get("id", "?")
            if ann.get("image_id") not in self._images:
                raise ValueError(
                    f"{self.annotation_file}: annotation {ann_id} names image id "
                    f"{ann.get('image_id')}, which is not in 'images'"
                )
            if ann.get("category_id") not in self.categories.ids:
                raise ValueError(
                    f"{self.annotation_file}: annotation {ann_id} names category id "
                    f"{ann.get('category_id')}; known ids: {list(self.categories.ids)}"
                )
            self._annotations[ann["image_id"]].append(ann)
        self.image_ids = _select_ids(image_ids, self._images, self.annotation_file)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> Sample:
        record = self._images[self.image_ids[index]]
        image = load_rgb_image(self.image_root / record["file_name"], record["id"])
        height, width = int(image.shape[1]), int(image.shape[2])
        listed = (record.get("height", height), record.get("width", width))
        if listed != (height, width):
            raise ValueError(
                f"{self.annotation_file}: image {record['id']} is {listed[0]}×{listed[1]} in the "
                f"json but {height}×{width} in {self.image_root / record['file_name']}"
            )
        masks, labels = [], []
        ignore = None
        for ann in self._annotations[record["id"]]:
            mask = self._decode(ann, height, width)
            if ann.get("iscrowd", 0):
                ignore = mask if ignore is None else ignore | mask
            else:
                masks.append(mask)
                labels.append(self.categories.to_contiguous(ann["category_id"]))
        stacked = np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)
        instances = Instances(
            torch.from_numpy(stacked),
            torch.tensor(labels, dtype=torch.long),
            ignore=None if ignore is None else torch.from_numpy(ignore),
        )
        return Sample(image, instances, record["id"], record["file_name"])

    def _decode(self, ann: Mapping, height: int, width: int) -> np.ndarray:
        """Mask [H, W] bool of one annotation."""
        where = (
            f"{self.annotation_file}: annotation {ann.get('id', '?')} of image {ann['image_id']}"
        )
        segm = ann.get("segmentation")
        if segm == []:  # some datasets keep box-only annotations
            return np.zeros((height, width), dtype=bool)
        if isinstance(segm, list):
            if any(len(p) < 6 or len(p) % 2 for p in segm):
                raise ValueError(f"{where}: polygons need an even number (>= 6) of coordinates")
            rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
        elif isinstance(segm, dict) and {"counts", "size"} <= segm.keys():
            if list(segm["size"]) != [height, width]:
                raise ValueError(
                    f"{where}: mask size {list(segm['size'])} differs from the image size "
                    f"{[height, width]}"
                )
            uncompressed = isinstance(segm["counts"], list)
            rle = mask_utils.frPyObjects(segm, height, width) if uncompressed else segm
        else:
            raise ValueError(f"{where}: segmentation must be polygons or RLE, got {segm!r:.80}")
        return mask_utils.decode(rle).astype(bool)


class UnlabeledImageDataset(Dataset[Sample]):
    """Images without targets (samples have instances=None).

    source: a COCO json (annotations ignored; images under image_root as in CocoInstanceDataset)
    or a folder whose png/jpg/jpeg files, sorted by name, get ids 0, 1, 2, ...
    """

    def __init__(
        self,
        source: str | Path,
        image_ids: Sequence[int] | None = None,
        image_root: str | Path | None = None,
    ) -> None:
        source = Path(source)
        if source.is_dir():
            if image_root is not None:
                raise ValueError(f"image_root applies to a COCO json source, not folder {source}")
            files = sorted(p.name for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ValueError(f"folder {source} holds no {'/'.join(IMAGE_SUFFIXES)} images")
            records = [{"id": i, "file_name": name} for i, name in enumerate(files)]
            self.image_root = source
        else:
            records = load_coco_json(source)["images"]
            self.image_root = Path(image_root) if image_root else default_image_root(source)
        self._images = _index_images(records, source)
        self.image_ids = _select_ids(image_ids, self._images, source)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> Sample:
        record = self._images[self.image_ids[index]]
        image = load_rgb_image(self.image_root / record["file_name"], record["id"])
        return Sample(image, None, record["id"], record["file_name"])


def _index_images(records: Iterable[Mapping], source: Path) -> dict[int, dict]:
    images: dict[int, dict] = {}
    for position, record in enumerate(records):
        if "id" not in record or "file_name" not in record:
            raise ValueError(f"{source}: images[{position}] needs 'id' and 'file_name'")
        if record["id"] in images:
            raise ValueError(f"{source}: image id {record['id']} appears twice in 'images'")
        images[record["id"]] = dict(record)
    return images


def _select_ids(image_ids: Sequence[int] | None, images: Mapping, source: Path) -> list[int]:
    if image_ids is None:
        return list(images)
    unknown = [i for i in image_ids if i not in images]
    if unknown:
        raise ValueError(f"{source}: unknown image ids {unknown[:10]} ({len(unknown)} in all)")
    return list(image_ids)
