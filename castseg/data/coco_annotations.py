"""The annotations of a COCO json: checked into `AnnotationRecord`s when a dataset is built,
decoded into `Instances` when an image is loaded, and written back as json for scoring.

Masks are decoded from polygons or RLE (compressed or not). Crowd annotations (iscrowd=1) are
not instances: their union becomes `Instances.ignore`, which is None when an image has no crowd.
What counts as a broken annotation is `castseg.data.validation`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from castseg.data.samples import AnnotationRecord, ImageRecord
from castseg.data.validation import BadRecordLog, CheckedSegmentation, check_segmentation, is_int
from castseg.structures import Instances

if TYPE_CHECKING:
    from castseg.data.coco import CategoryMap


def group_annotations(
    annotations: list,
    images: Mapping[int, dict],
    selected: Sequence[int],
    categories: CategoryMap,
    log: BadRecordLog,
) -> dict[int, list[dict]]:
    """Annotations of the selected images by image id; broken references go to `log`."""
    wanted = set(selected)
    grouped: dict[int, list[dict]] = {}
    for position, ann in enumerate(annotations):
        if not isinstance(ann, dict) or not is_int(ann.get("id")):
            log.reject(f"annotations[{position}]", "needs an integer 'id'")
            continue
        image_id, category_id = ann.get("image_id"), ann.get("category_id")
        if not is_int(image_id) or image_id not in images:
            log.reject(f"annotation {ann['id']}", f"names image id {image_id!r}, not in 'images'")
        elif image_id not in wanted:
            continue
        elif category_id not in categories.ids:
            log.reject(
                f"annotation {ann['id']} of image {image_id}",
                f"names category id {category_id!r}; known ids: {list(categories.ids)}",
            )
        else:
            grouped.setdefault(image_id, []).append(ann)
    return grouped


def check_annotation(
    ann: dict,
    image_id: int,
    height: int,
    width: int,
    categories: CategoryMap,
    log: BadRecordLog,
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
        label=categories.to_contiguous(ann["category_id"]),
        crowd=bool(ann.get("iscrowd", 0)),
        segmentation=segmentation,
        area=float(area) if _is_finite(area) else float(segmentation.area),
        box=box,
    )


def decode_instances(record: ImageRecord) -> Instances:
    """The instances of an image record, its crowd annotations' union as `ignore`."""
    height, width = record.height, record.width
    crowd = torch.tensor([a.crowd for a in record.annotations], dtype=torch.bool)
    if record.annotations:
        rles = [a.segmentation.rle(height, width) for a in record.annotations]
        decoded = mask_utils.decode(rles)  # [H, W, N] uint8 0/1, column-major
        planes = torch.from_numpy(decoded.transpose(2, 1, 0).view(bool)).transpose(1, 2)
    else:
        planes = torch.zeros(0, height, width, dtype=torch.bool)
    labels = [a.label for a in record.annotations if not a.crowd]
    return Instances(
        planes[~crowd].contiguous(),
        torch.tensor(labels, dtype=torch.long),
        ignore=planes[crowd].any(0) if crowd.any() else None,
    )


def annotation_json(
    ann: AnnotationRecord, record: ImageRecord, categories: CategoryMap
) -> dict[str, Any]:
    """A kept annotation as a COCO json annotation: segmentation as polygons or RLE with string
    counts, area and bbox as in the json (else from the mask)."""
    return {
        "id": ann.annotation_id,
        "image_id": record.image_id,
        "category_id": categories.to_coco(ann.label),
        "iscrowd": int(ann.crowd),
        "segmentation": _segmentation_json(ann.segmentation, record),
        "area": ann.area,
        "bbox": list(ann.box),
    }


def _segmentation_json(segmentation: CheckedSegmentation, record: ImageRecord) -> Any:
    if isinstance(segmentation.data, bytes):
        return {"size": [record.height, record.width], "counts": segmentation.data.decode()}
    return [part.tolist() for part in segmentation.data]


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


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)
