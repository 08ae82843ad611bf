"""Pieces shared by the dataset converters: layout checks, mask annotations, the COCO json write.

The converters stream over an official dataset tree one image at a time and collect COCO image
and annotation records; only the records (RLE masks) are kept in memory, never the images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from castseg.io import atomic_write_json

_SHOWN = 5  # how many missing files an error lists


def require_folder(root: Path, relative: str, what: str) -> Path:
    """root / relative, which must be a folder; the error names both and what it should hold."""
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist or is not a folder")
    folder = root / relative
    if not folder.is_dir():
        raise FileNotFoundError(f"{root}: folder {relative} ({what}) is missing")
    return folder


def require_files(paths: Sequence[Path], what: str, pattern: str) -> None:
    """Every path must be a file; the error counts the missing ones and lists the first few."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        listed = ", ".join(str(p) for p in missing[:_SHOWN])
        more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
        raise FileNotFoundError(
            f"{len(missing)} {what} are missing (expected {pattern}): {listed}{more}"
        )


def checked_png(path: Path, modes: Sequence[str], expected_size: tuple[int, int]) -> np.ndarray:
    """Pixels of an annotation PNG whose mode is one of `modes` and size (W, H) `expected_size`."""
    with Image.open(path) as png:
        if png.mode not in modes:
            raise ValueError(
                f"{path}: PNG mode {png.mode!r}, expected one of {list(modes)}; is this the "
                "official annotation file?"
            )
        if png.size != expected_size:
            raise ValueError(
                f"{path}: annotation is {png.size[0]}×{png.size[1]} (W×H) but its image is "
                f"{expected_size[0]}×{expected_size[1]}"
            )
        return np.array(png)


def image_size(path: Path) -> tuple[int, int]:
    """(W, H) of an image file, read from its header only."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image file {path}: {err}") from err


def mask_annotation(
    mask: np.ndarray, *, annotation_id: int, image_id: int, category_id: int, iscrowd: bool
) -> dict:
    """COCO annotation of a [H, W] bool mask: RLE (str counts), area and [x, y, w, h] bbox.

    The RLE encoder wants column-major uint8: a column-major bool mask (a comparison on a
    column-major array) is viewed as that without a copy, which converting full-size masks
    one by one would cost.
    """
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=bool).view(np.uint8))
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": category_id,
        "iscrowd": int(iscrowd),
        "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode()},
        "area": int(mask_utils.area(rle)),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
    }


def write_coco_json(
    path: Path, images: list[dict], annotations: list[dict], categories: list[dict]
) -> None:
    """Write a COCO instances json atomically (compact: these files hold many RLE masks)."""
    data = {"images": images, "annotations": annotations, "categories": categories}
    atomic_write_json(path, data, indent=None)


def convert_all_splits(
    root: str | Path,
    out_dir: str | Path,
    output_names: Mapping[str, str],
    *,
    check_layout: Callable[[str | Path, str], object],
    convert_split: Callable[..., dict],
    progress: bool = True,
) -> dict[str, Path]:
    """Check every split's layout, convert them all, then write out_dir/<output name> per split.

    Nothing is written unless every split converts. Returns split → path of its COCO json.
    """
    for split in output_names:
        check_layout(root, split)
    converted = {split: convert_split(root, split, progress=progress) for split in output_names}
    written = {}
    for split, data in converted.items():
        path = Path(out_dir) / output_names[split]
        write_coco_json(path, data["images"], data["annotations"], data["categories"])
        written[split] = path
    return written
