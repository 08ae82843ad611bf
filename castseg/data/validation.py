"""Checks of COCO records before training, and the policy for records that fail them.

A dataset checks every image header and every annotation when it is built (see
`castseg.data.coco`) and reports each problem through a `BadRecordLog`, which names the file and
the record (image id, annotation id). `on_bad_record` decides what a broken record does:

- "error": the dataset is not built; one `BadRecordError` lists every broken record.
- "skip": the record is dropped (an image together with its annotations; an annotation alone,
  its image keeps its other instances) and listed in the dataset's `skipped`, with one
  `BadRecordWarning` per file.

Some records are dropped under both policies, counted in `skipped` and warned about:
annotations whose mask has no pixel (zero area, box-only annotations with an empty segmentation,
polygons entirely outside the image), as detectron2 does — they are common in real COCO files
and teach nothing. Polygon parts with fewer than 3 points enclose no area and are left out.

Polygons: vertices may lie outside the image; the mask is the part inside, as pycocotools
rasterizes it (the same rasterization the COCO evaluator applies to ground truth). A vertex more
than one image height/width outside the image means the polygon belongs to another image size:
a broken record. RLE: `size` must be the image's [height, width] and the runs must cover exactly
height × width pixels (pycocotools decodes shorter runs into uninitialised memory).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from castseg.config import BadRecordPolicy

_LISTED = 20  # broken records spelled out in an error message


class BadRecordError(ValueError):
    """A dataset file holds broken records (policy "error"); the message lists them."""


class BadRecordWarning(UserWarning):
    """Records of a dataset file were dropped; the dataset's `skipped` lists them."""


class BadRecordLog:
    """Collects the problems found in one dataset file and applies `policy` to them."""

    def __init__(self, source: str | Path, policy: BadRecordPolicy) -> None:
        if policy not in ("error", "skip"):
            raise ValueError(f"on_bad_record must be 'error' or 'skip', got {policy!r}")
        self.source = Path(source)
        self.policy = policy
        self.skipped: list[str] = []
        self._rejected: list[str] = []

    def reject(self, record: str, problem: str) -> None:
        """A broken record: an error under "error", dropped under "skip"."""
        if self.policy == "error":
            self._rejected.append(f"{record}: {problem}")
        else:
            self.skipped.append(f"{self.source}: {record}: {problem}")

    def drop(self, record: str, problem: str) -> None:
        """A record dropped under either policy (e.g. a zero-area mask)."""
        self.skipped.append(f"{self.source}: {record}: {problem}")

    def finish(self) -> list[str]:
        """Raise `BadRecordError` for rejected records; warn once about dropped ones.

        Returns the reasons of the dropped records.
        """
        if self._rejected:
            lines = self._rejected[:_LISTED]
            if len(self._rejected) > _LISTED:
                lines.append(f"... and {len(self._rejected) - _LISTED} more")
            raise BadRecordError(
                f"{self.source}: {len(self._rejected)} broken record(s) (data.on_bad_record: "
                "skip, or --set data.on_bad_record=skip, drops them instead):\n  "
                + "\n  ".join(lines)
            )
        if self.skipped:
            warnings.warn(
                f"{self.source}: dropped {len(self.skipped)} record(s), e.g. {self.skipped[0]}",
                BadRecordWarning,
                stacklevel=3,
            )
        return list(self.skipped)


@dataclass(frozen=True)
class CheckedSegmentation:
    """A valid segmentation kept compact until its image is loaded.

    data: compressed RLE counts (bytes, pycocotools' string format) or polygons (one float64
    array [2k] of x, y coordinates per part). area: pixels in the image; box: (x, y, w, h).
    """

    data: bytes | tuple[np.ndarray, ...]
    area: int
    box: tuple[float, float, float, float]

    def decode(self, height: int, width: int) -> np.ndarray:
        """Mask [H, W] bool."""
        return mask_utils.decode(self.rle(height, width)).astype(bool)

    def rle(self, height: int, width: int) -> dict[str, Any]:
        """pycocotools RLE {"size": [H, W], "counts": bytes}."""
        if isinstance(self.data, bytes):
            return {"size": [height, width], "counts": self.data}
        parts = [part.tolist() for part in self.data]
        return mask_utils.merge(mask_utils.frPyObjects(parts, height, width))


def check_segmentation(segmentation: Any, height: int, width: int) -> CheckedSegmentation:
    """Validate a COCO segmentation (polygons, or RLE with list or string counts) of an
    `height` × `width` image. Raises ValueError saying what is wrong."""
    if isinstance(segmentation, list):
        return _check_polygons(segmentation, height, width)
    if isinstance(segmentation, dict) and {"counts", "size"} <= segmentation.keys():
        return _check_rle(segmentation, height, width)
    raise ValueError(f"segmentation must be polygons or RLE, got {segmentation!r:.80}")


def rle_runs(counts: str) -> np.ndarray:
    """Run lengths [R] int64 encoded in a COCO compressed RLE string.

    Each run is a little-endian sequence of 6-bit characters (offset 48; bit 0x20: more follow;
    bit 0x10 of the last: negative); from the fourth run on, a run is stored as the difference to
    the run two before it. Raises ValueError for characters or numbers outside the format.
    """
    chars = np.frombuffer(counts.encode("latin-1"), dtype=np.uint8).astype(np.int64) - 48
    if chars.size == 0:
        return np.zeros(0, dtype=np.int64)
    if chars.min() < 0 or chars.max() > 63:
        raise ValueError("RLE counts hold characters outside '0'..'o'")
    more = (chars & 0x20) != 0
    if more[-1]:
        raise ValueError("RLE counts end inside a number")
    ends = np.flatnonzero(~more)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 12:
        raise ValueError("RLE counts hold a number of more than 60 bits")
    position = np.arange(chars.size) - np.repeat(starts, lengths)
    values = np.add.reduceat((chars & 0x1F) << (5 * position), starts)
    negative = (chars[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * lengths[negative])
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    return runs


def _check_rle(rle: dict, height: int, width: int) -> CheckedSegmentation:
    size = rle["size"]
    if not _is_int_pair(size) or list(size) != [height, width]:
        raise ValueError(f"RLE size {size!r:.40} is not the image's [H, W] = {[height, width]}")
    counts = rle["counts"]
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
            raise ValueError("RLE counts must be integers")
        try:
            runs = np.asarray(counts, dtype=np.int64)
        except OverflowError as err:
            raise ValueError("RLE counts hold a number too large for a run") from err
        _check_runs(runs, height, width)
        data = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        encoded: bytes = data["counts"]
    elif isinstance(counts, str):
        runs = rle_runs(counts)
        _check_runs(runs, height, width)
        encoded = counts.encode("ascii")
    else:
        raise ValueError(f"RLE counts must be a list or a string, got {type(counts).__name__}")
    box = mask_utils.toBbox({"size": [height, width], "counts": encoded})
    return CheckedSegmentation(encoded, int(runs[1::2].sum()), _as_box(box))


def _check_runs(runs: np.ndarray, height: int, width: int) -> None:
    if runs.size and runs.min() < 0:
        raise ValueError("RLE counts hold a negative run")
    if int(runs.sum()) != height * width:
        raise ValueError(
            f"RLE runs cover {int(runs.sum())} pixels, not the image's {height}×{width} = "
            f"{height * width}"
        )


def _check_polygons(polygons: list, height: int, width: int) -> CheckedSegmentation:
    parts = []
    for part in polygons:
        if not isinstance(part, list) or not all(_is_number(v) for v in part):
            raise ValueError("a polygon must be a list of x, y numbers")
        if len(part) % 2:
            raise ValueError(f"a polygon has an odd number ({len(part)}) of coordinates")
        coords = np.asarray(part, dtype=np.float64)
        if not np.isfinite(coords).all():
            raise ValueError("a polygon has a non-finite coordinate")
        xs, ys = coords[0::2], coords[1::2]
        far = (xs < -width) | (xs > 2 * width) | (ys < -height) | (ys > 2 * height)
        if far.any():
            k = int(np.flatnonzero(far)[0])
            raise ValueError(
                f"polygon vertex ({xs[k]:g}, {ys[k]:g}) lies more than the image size outside "
                f"the {width}×{height} (W×H) image"
            )
        if len(part) >= 6:
            parts.append(coords)
    checked = CheckedSegmentation(tuple(parts), 0, (0.0, 0.0, 0.0, 0.0))
    if not parts:
        return checked
    rle = checked.rle(height, width)
    area = int(mask_utils.area(rle))
    return CheckedSegmentation(tuple(parts), area, _as_box(mask_utils.toBbox(rle)))


def is_int(value: Any) -> bool:
    """Whether a json value is an integer (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_int_pair(value: Any) -> bool:
    return isinstance(value, Sequence) and len(value) == 2 and all(is_int(v) for v in value)


def _as_box(box: np.ndarray) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in box)
    return x, y, w, h
