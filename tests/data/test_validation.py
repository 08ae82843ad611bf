"""Record checks: the RLE string parser against pycocotools, segmentations, the bad-record log."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from castseg.data.validation import (
    BadRecordError,
    BadRecordLog,
    BadRecordWarning,
    check_segmentation,
    rle_runs,
)


def _runs(mask: np.ndarray) -> list[int]:
    """Column-major run lengths starting with background, counted by hand."""
    flat = mask.T.reshape(-1)
    changes = np.flatnonzero(np.diff(flat)) + 1
    lengths = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    return ([0] if flat[0] else []) + lengths


@pytest.mark.parametrize("seed", range(6))
def test_rle_runs_reads_pycocotools_strings(seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(1, 300, 2)
    mask = rng.random((height, width)) < rng.uniform(0.0, 1.0)
    if seed == 0:
        mask[:] = True  # a single long run after an empty first one
    if seed == 1:
        mask = np.zeros((height, width), dtype=bool)
        mask[height // 2 :, width // 3 :] = True  # long runs, some shorter than their delta base
    counts = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
    assert rle_runs(counts).tolist() == _runs(mask)


def test_rle_runs_rejects_what_is_not_the_format():
    with pytest.raises(ValueError, match="characters outside"):
        rle_runs("ab!c")
    with pytest.raises(ValueError, match="end inside a number"):
        rle_runs("0P")  # 'P' = 32: a continuation bit with nothing after it
    with pytest.raises(ValueError, match="60 bits"):
        rle_runs("P" * 12 + "0")
    assert rle_runs("").tolist() == []


def test_rle_checks_size_and_coverage():
    mask = np.zeros((5, 7), dtype=np.uint8)
    mask[1:3, 2:6] = 1
    compressed = mask_utils.encode(np.asfortranarray(mask))["counts"].decode()
    for counts in (compressed, _runs(mask)):
        checked = check_segmentation({"size": [5, 7], "counts": counts}, 5, 7)
        assert checked.area == 8 and checked.box == (2.0, 1.0, 4.0, 2.0)
        assert np.array_equal(checked.decode(5, 7), mask.astype(bool))
    with pytest.raises(ValueError, match=r"size \[7, 5\] is not the image's \[H, W\] = \[5, 7\]"):
        check_segmentation({"size": [7, 5], "counts": compressed}, 5, 7)
    with pytest.raises(ValueError, match="cover 34 pixels, not the image's 5×7 = 35"):
        check_segmentation({"size": [5, 7], "counts": [3, 31]}, 5, 7)
    with pytest.raises(ValueError, match="cover 36 pixels"):
        check_segmentation({"size": [5, 7], "counts": [3, 33]}, 5, 7)
    with pytest.raises(ValueError, match="negative run"):
        check_segmentation({"size": [5, 7], "counts": [40, -5]}, 5, 7)
    with pytest.raises(ValueError, match="must be integers"):
        check_segmentation({"size": [5, 7], "counts": [3.0, 32]}, 5, 7)


def test_polygons_are_clipped_to_the_image_like_pycocotools():
    inside_and_out = [-4.0, -4.0, 6.0, -4.0, 6.0, 3.0, -4.0, 3.0]
    checked = check_segmentation([inside_and_out], 10, 12)
    oracle = mask_utils.decode(mask_utils.frPyObjects([inside_and_out], 10, 12))[..., 0]
    assert np.array_equal(checked.decode(10, 12), oracle.astype(bool))
    assert checked.area == int(oracle.sum()) > 0
    outside = [13.0, 0.0, 20.0, 0.0, 20.0, 5.0]
    assert check_segmentation([outside], 10, 12).area == 0
    with pytest.raises(ValueError, match=r"vertex \(25, 0\) lies more than the image size"):
        check_segmentation([[0.0, 0.0, 25.0, 0.0, 5.0, 5.0]], 10, 12)


def test_polygon_parts_without_area_are_left_out_and_bad_numbers_rejected():
    triangle = [1.0, 1.0, 8.0, 1.0, 4.0, 6.0]
    checked = check_segmentation([triangle, [2.0, 2.0, 3.0, 3.0]], 10, 12)
    assert len(checked.data) == 1 and checked.area > 0
    assert check_segmentation([], 10, 12).area == 0  # box-only annotation
    with pytest.raises(ValueError, match="odd number"):
        check_segmentation([[1.0, 2.0, 3.0, 4.0, 5.0]], 10, 12)
    with pytest.raises(ValueError, match="list of x, y numbers"):
        check_segmentation([[1.0, "2", 3.0, 4.0, 5.0, 6.0]], 10, 12)
    with pytest.raises(ValueError, match="non-finite"):
        check_segmentation([[1.0, float("nan"), 3.0, 4.0, 5.0, 6.0]], 10, 12)
    with pytest.raises(ValueError, match="polygons or RLE"):
        check_segmentation(None, 10, 12)


def test_log_raises_every_broken_record_under_error(tmp_path):
    log = BadRecordLog(tmp_path / "x.json", "error")
    for i in range(25):
        log.reject(f"annotation {i}", "broken")
    log.drop("annotation 99", "zero-area mask")
    with pytest.raises(BadRecordError) as info:
        log.finish()
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'x.json'}: 25 broken record(s)")
    # The hint names the config key as a user writes it, in YAML and on the command line.
    assert "(data.on_bad_record: skip, or --set data.on_bad_record=skip, drops them" in message
    assert "annotation 19: broken" in message and "annotation 20:" not in message
    assert message.endswith("... and 5 more")


def test_log_lists_and_warns_under_skip(tmp_path):
    log = BadRecordLog(tmp_path / "x.json", "skip")
    log.reject("image 4", "unreadable")
    log.drop("annotation 9 of image 2", "zero-area mask")
    with pytest.warns(BadRecordWarning, match="dropped 2 record"):
        skipped = log.finish()
    assert skipped == [
        f"{tmp_path / 'x.json'}: image 4: unreadable",
        f"{tmp_path / 'x.json'}: annotation 9 of image 2: zero-area mask",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert BadRecordLog(tmp_path / "x.json", "skip").finish() == []
    with pytest.raises(ValueError, match="'error' or 'skip'"):
        BadRecordLog(tmp_path / "x.json", "ignore")  # type: ignore[arg-type]
