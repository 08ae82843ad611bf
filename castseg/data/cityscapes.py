"""Cityscapes fine instance annotations as COCO instance jsons (the 8 evaluated thing classes).

Layout under ROOT (the official archives gtFine_trainvaltest and leftImg8bit_trainvaltest):

    gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png
    leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png

An instanceIds PNG is 16-bit: a pixel of an object holds labelId * 1000 + k; a pixel below 1000
holds a bare labelId (stuff, or a group of objects such as "cargroup" when labelId is a thing).
Each object of a thing class becomes an annotation; each thing-class group region becomes one
iscrowd=1 annotation. COCO category ids are the Cityscapes labelIds, so results records carry the
ids the official evaluation expects. Image file names are relative to ROOT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import labels as _CITYSCAPES_LABELS

from castseg.data.convert_common import (
    checked_png,
    convert_all_splits,
    image_size,
    mask_annotation,
    require_files,
    require_folder,
)
from castseg.progress_bar import progress_bar

# Thing classes scored by the official instance evaluation (caravan and trailer are not).
THING_LABELS = tuple(
    label for label in _CITYSCAPES_LABELS if label.hasInstances and not label.ignoreInEval
)
THING_LABEL_IDS: tuple[int, ...] = tuple(label.id for label in THING_LABELS)
THING_NAMES: tuple[str, ...] = tuple(label.name for label in THING_LABELS)
SPLITS = ("train", "val")
OUTPUT_NAMES = {split: f"cityscapes_{split}.json" for split in SPLITS}

_GT_SUFFIX = "_gtFine_instanceIds.png"
_IMAGE_SUFFIX = "_leftImg8bit.png"
# Pillow opens 16-bit grayscale PNGs as I;16 (recent releases) or I (older ones).
_INSTANCE_MODES = ("I;16", "I;16B", "I;16L", "I")
_GROUP_LIMIT = 1000  # pixel values below it are bare labelIds, not objects


@dataclass(frozen=True)
class CityscapesFrame:
    """One annotated frame: its instanceIds PNG and its image."""

    instance_file: Path
    image_file: Path


def frame_key(file_name: str | Path) -> str:
    """The frame part of any Cityscapes file name: 'aachen_000000_000019_gtFine_instanceIds.png'
    (or a path ending in it, or the key itself) → 'aachen_000000_000019'. Raises ValueError for
    other names."""
    parts = Path(file_name).name.split("_")
    if len(parts) < 3 or not (parts[1].isdigit() and parts[2].isdigit()):
        raise ValueError(
            f"{file_name!s} is not a Cityscapes file name (<city>_<seq>_<frame>_<type>.<ext>)"
        )
    return "_".join(parts[:3])


def find_frames(root: str | Path, split: str) -> list[CityscapesFrame]:
    """The frames of a split, sorted by city and name; errors name the missing folder or files."""
    root = Path(root)
    gt_dir = require_folder(root, f"gtFine/{split}", "instanceIds PNGs from gtFine_trainvaltest")
    image_dir = require_folder(root, f"leftImg8bit/{split}", "images from leftImg8bit_trainvaltest")
    gt_files = sorted(gt_dir.glob(f"*/*{_GT_SUFFIX}"))
    if not gt_files:
        raise FileNotFoundError(
            f"{root}: no files match gtFine/{split}/<city>/*{_GT_SUFFIX}; the gtFine archive "
            "must be extracted with its instanceIds PNGs"
        )
    frames = [
        CityscapesFrame(gt, image_dir / gt.parent.name / gt.name.replace(_GT_SUFFIX, _IMAGE_SUFFIX))
        for gt in gt_files
    ]
    require_files(
        [f.image_file for f in frames],
        f"leftImg8bit/{split} images",
        f"leftImg8bit/{split}/<city>/*{_IMAGE_SUFFIX} for every instanceIds PNG",
    )
    return frames


def instance_files(root: str | Path, split: str = "val") -> list[Path]:
    """The gtFine instanceIds PNGs of a split (what the official evaluation scores against)."""
    return [frame.instance_file for frame in find_frames(root, split)]


def instance_file_for(root: str | Path, image_file_name: str | Path) -> Path:
    """The instanceIds PNG of an image named relative to root, as in the converted jsons:
    leftImg8bit/<split>/<city>/<frame>_leftImg8bit.png →
    gtFine/<split>/<city>/<frame>_gtFine_instanceIds.png."""
    parts = Path(image_file_name).parts
    if len(parts) != 4 or parts[0] != "leftImg8bit":
        raise ValueError(
            f"{image_file_name!s} is not a Cityscapes image path relative to the root "
            "(leftImg8bit/<split>/<city>/<name>)"
        )
    return Path(root) / "gtFine" / parts[1] / parts[2] / f"{frame_key(parts[3])}{_GT_SUFFIX}"


def convert_split(root: str | Path, split: str, *, progress: bool = True) -> dict:
    """COCO instances data (images, annotations, categories) of one split, one image at a time.

    Image ids are 1, 2, ... in city and name order; annotation ids start at 1 (pycocotools
    treats id 0 as "unmatched").
    """
    root = Path(root)
    frames = find_frames(root, split)
    images, annotations = [], []
    for image_id, frame in enumerate(
        progress_bar(frames, desc=f"cityscapes {split}", unit="img", enabled=progress), start=1
    ):
        width, height = image_size(frame.image_file)
        # column-major, so that every object mask below is too (see mask_annotation)
        ids = np.asfortranarray(checked_png(frame.instance_file, _INSTANCE_MODES, (width, height)))
        images.append(
            {
                "id": image_id,
                "file_name": frame.image_file.relative_to(root).as_posix(),
                "height": height,
                "width": width,
            }
        )
        for value in np.unique(ids):
            label_id = int(value) // _GROUP_LIMIT if value >= _GROUP_LIMIT else int(value)
            if label_id not in THING_LABEL_IDS:
                continue
            annotations.append(
                mask_annotation(
                    ids == value,
                    annotation_id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=label_id,
                    iscrowd=value < _GROUP_LIMIT,
                )
            )
    categories = [
        {"id": label.id, "name": label.name, "supercategory": label.category}
        for label in THING_LABELS
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def convert_cityscapes(
    root: str | Path, out_dir: str | Path, *, progress: bool = True
) -> dict[str, Path]:
    """Write out_dir/cityscapes_train.json and cityscapes_val.json; returns split → path.

    Both splits are checked for layout before the first image is converted, and nothing is
    written unless both convert.
    """
    return convert_all_splits(
        root,
        out_dir,
        OUTPUT_NAMES,
        check_layout=find_frames,
        convert_split=convert_split,
        progress=progress,
    )
