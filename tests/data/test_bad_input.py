"""The bad-input corpus: every broken input a COCO dataset may hold, under both policies.

Every case starts from the same valid dataset (`_base`) and changes one thing. Images: 1 `a.png`,
2 `b.png`, 3 `c.jpg`, all 24×32. Annotations: 1 (compressed RLE) and 2 (polygon) on image 1,
3 (uncompressed RLE) and 4 (polygon) on image 2, 5 (compressed RLE) and 6 (polygon) on image 3.

| case                  | what is broken                               | record        |
|-----------------------|----------------------------------------------|---------------|
| garbage_image         | a.png holds text, not an image               | image 1       |
| truncated_png         | a.png cut in half                            | image 1       |
| truncated_jpeg        | c.jpg cut in half                            | image 3       |
| missing_image         | b.png deleted                                | image 2       |
| image_size_mismatch   | the json says image 2 is 25×32               | image 2       |
| image_without_id      | images[1] has no id (orphans annotations 3-4)| images[1]     |
| image_without_file    | image 2 has no file_name                     | image 2       |
| unknown_image         | annotation 7 names image 99                  | annotation 7  |
| unknown_category      | annotation 2 names category 5                | annotation 2  |
| annotation_without_id | annotations[0] has no id                     | annotations[0]|
| rle_wrong_size        | annotation 3's RLE size is [25, 32]          | annotation 3  |
| rle_short_runs        | annotation 3's runs cover 700 of 768 pixels  | annotation 3  |
| rle_bad_string        | annotation 5's counts hold '!'               | annotation 5  |
| polygon_odd_length    | annotation 4 has 7 coordinates               | annotation 4  |
| polygon_far_outside   | annotation 6 has a vertex at x = 500         | annotation 6  |
| no_segmentation       | annotation 2 has no segmentation             | annotation 2  |

"error" stops at dataset construction with one `BadRecordError` naming the file and every broken
record; "skip" drops the record (a broken image with its annotations, a broken annotation alone),
lists it in `skipped` and warns. Dropped under both policies (`DROPPED_CASES`), each with what
is wrong (`WHY_EMPTY`): a zero-area RLE mask, a polygon entirely outside the image, a 2-point
polygon, a box-only annotation. Damage inside an image that keeps its header and end marker is
only seen when the image is loaded (`test_damaged_pixels_*`).
A polygon partly outside the image is valid: it is clipped as pycocotools rasterizes it. Valid
unusual inputs (no instances, grayscale, RGBA, 16-bit) load as `test_valid_unusual_images_load`
checks. Whole-file problems (missing or broken JSON, duplicate ids) raise under both policies.
Config cases live in tests/test_bad_config.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torch.utils.data import DataLoader

from castseg.config import DataConfig
from castseg.data.coco import CocoInstanceDataset, UnlabeledImageDataset
from castseg.data.samples import collate_samples
from castseg.data.validation import BadRecordError, BadRecordWarning
from castseg.pipeline.experiment_data import load_experiment_data

H, W = 24, 32
FILES = {1: "a.png", 2: "b.png", 3: "c.jpg"}


def _mask(seed: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    top, left = 2 + 3 * seed, 1 + 4 * seed
    mask[top : top + 6, left : left + 9] = 1
    return mask


def _compressed(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [H, W], "counts": rle["counts"].decode()}


def _uncompressed(mask: np.ndarray) -> dict:
    flat = mask.T.reshape(-1)
    changes = np.flatnonzero(np.diff(flat)) + 1
    lengths = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    return {"size": [H, W], "counts": ([0] if flat[0] else []) + lengths}


def _polygon(seed: int) -> list[list[float]]:
    x, y = 3.0 + 5 * seed, 4.0 + 2 * seed
    return [[x, y, x + 12, y, x + 6, y + 9]]


def _base() -> dict:
    segmentations = [
        _compressed(_mask(0)),
        _polygon(0),
        _uncompressed(_mask(1)),
        _polygon(1),
        _compressed(_mask(2)),
        _polygon(2),
    ]
    return {
        "images": [
            {"id": i, "file_name": name, "height": H, "width": W} for i, name in FILES.items()
        ],
        "annotations": [
            {"id": k + 1, "image_id": k // 2 + 1, "category_id": 1 + k % 2, "iscrowd": 0}
            | {"segmentation": segm}
            for k, segm in enumerate(segmentations)
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }


def _write_base(root: Path) -> tuple[Path, dict]:
    (root / "images").mkdir(parents=True)
    for seed, name in FILES.items():
        pixels = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / name)
    return root / "instances.json", _base()


def _ann(coco: dict, ann_id: int) -> dict:
    return next(a for a in coco["annotations"] if a["id"] == ann_id)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@dataclass(frozen=True)
class Case:
    """break_: changes the written images (root) and/or the json (coco) in place.

    record: how messages name the broken record; images: image ids left under "skip";
    annotations: annotation ids left under "skip"; file: a file the message must also name;
    count: broken records (an image without id orphans its annotations: they count too).
    """

    name: str
    break_: Callable[[Path, dict], None]
    record: str
    images: tuple[int, ...]
    annotations: tuple[int, ...]
    file: str | None = None
    count: int = 1


ALL_ANNS = (1, 2, 3, 4, 5, 6)

BROKEN_CASES = [
    Case(
        "garbage_image",
        lambda root, coco: (root / "images/a.png").write_bytes(b"definitely not a png"),
        "image 1",
        (2, 3),
        (3, 4, 5, 6),
        "a.png",
    ),
    Case(
        "truncated_png",
        lambda root, coco: _truncate(root / "images/a.png"),
        "image 1",
        (2, 3),
        (3, 4, 5, 6),
        "a.png",
    ),
    Case(
        "truncated_jpeg",
        lambda root, coco: _truncate(root / "images/c.jpg"),
        "image 3",
        (1, 2),
        (1, 2, 3, 4),
        "c.jpg",
    ),
    Case(
        "missing_image",
        lambda root, coco: (root / "images/b.png").unlink(),
        "image 2",
        (1, 3),
        (1, 2, 5, 6),
        "b.png",
    ),
    Case(
        "image_size_mismatch",
        lambda root, coco: coco["images"][1].update(height=H + 1),
        "image 2",
        (1, 3),
        (1, 2, 5, 6),
        "b.png",
    ),
    Case(
        "image_without_id",
        lambda root, coco: coco["images"][1].pop("id"),
        r"images\[1\]",
        (1, 3),
        (1, 2, 5, 6),
        count=3,
    ),
    Case(
        "image_without_file",
        lambda root, coco: coco["images"][1].pop("file_name"),
        "image 2",
        (1, 3),
        (1, 2, 5, 6),
    ),
    Case(
        "unknown_image",
        lambda root, coco: coco["annotations"].append(
            {"id": 7, "image_id": 99, "category_id": 1, "segmentation": _polygon(0)}
        ),
        "annotation 7",
        (1, 2, 3),
        ALL_ANNS,
    ),
    Case(
        "unknown_category",
        lambda root, coco: _ann(coco, 2).update(category_id=5),
        "annotation 2 of image 1",
        (1, 2, 3),
        (1, 3, 4, 5, 6),
    ),
    Case(
        "annotation_without_id",
        lambda root, coco: coco["annotations"][0].pop("id"),
        r"annotations\[0\]",
        (1, 2, 3),
        (2, 3, 4, 5, 6),
    ),
    Case(
        "rle_wrong_size",
        lambda root, coco: _ann(coco, 3)["segmentation"].update(size=[H + 1, W]),
        "annotation 3 of image 2",
        (1, 2, 3),
        (1, 2, 4, 5, 6),
    ),
    Case(
        "rle_short_runs",
        lambda root, coco: _ann(coco, 3)["segmentation"].update(counts=[100, 600]),
        "annotation 3 of image 2",
        (1, 2, 3),
        (1, 2, 4, 5, 6),
    ),
    Case(
        "rle_bad_string",
        lambda root, coco: _ann(coco, 5)["segmentation"].update(counts="Q!3"),
        "annotation 5 of image 3",
        (1, 2, 3),
        (1, 2, 3, 4, 6),
    ),
    Case(
        "polygon_odd_length",
        lambda root, coco: _ann(coco, 4)["segmentation"][0].append(7.0),
        "annotation 4 of image 2",
        (1, 2, 3),
        (1, 2, 3, 5, 6),
    ),
    Case(
        "polygon_far_outside",
        lambda root, coco: _ann(coco, 6)["segmentation"][0].__setitem__(2, 500.0),
        "annotation 6 of image 3",
        (1, 2, 3),
        (1, 2, 3, 4, 5),
    ),
    Case(
        "no_segmentation",
        lambda root, coco: _ann(coco, 2).pop("segmentation"),
        "annotation 2 of image 1",
        (1, 2, 3),
        (1, 3, 4, 5, 6),
    ),
]

# What the warning says is wrong with each dropped segmentation.
WHY_EMPTY = {
    "zero_area_rle": "the RLE has no foreground pixel",
    "polygon_entirely_outside": "its polygons cover no pixel: outside the image, or degenerate",
    "polygon_two_points": "a polygon of 2 point(s); a polygon needs at least 3",
    "box_only": "no polygon: the annotation has a box only",
}
DROPPED_CASES = [
    Case(
        "zero_area_rle",
        lambda root, coco: _ann(coco, 5).update(segmentation=_compressed(_mask(0) * 0)),
        "annotation 5 of image 3",
        (1, 2, 3),
        (1, 2, 3, 4, 6),
    ),
    Case(
        "polygon_entirely_outside",
        lambda root, coco: _ann(coco, 4).update(segmentation=[[40.0, 1.0, 50.0, 1.0, 45.0, 9.0]]),
        "annotation 4 of image 2",
        (1, 2, 3),
        (1, 2, 3, 5, 6),
    ),
    Case(
        "polygon_two_points",
        lambda root, coco: _ann(coco, 6).update(segmentation=[[2.0, 2.0, 10.0, 10.0]]),
        "annotation 6 of image 3",
        (1, 2, 3),
        (1, 2, 3, 4, 5),
    ),
    Case(
        "box_only",
        lambda root, coco: _ann(coco, 2).update(segmentation=[], bbox=[1.0, 1.0, 5.0, 5.0]),
        "annotation 2 of image 1",
        (1, 2, 3),
        (1, 3, 4, 5, 6),
    ),
]


def _build(tmp_path: Path, case: Case) -> Path:
    path, coco = _write_base(tmp_path)
    case.break_(tmp_path, coco)
    path.write_text(json.dumps(coco))
    return path


def _kept_annotations(dataset: CocoInstanceDataset) -> tuple[int, ...]:
    ids = [a.annotation_id for i in range(len(dataset)) for a in dataset.records[i].annotations]
    return tuple(sorted(ids))


def _names_file_and_record(message: str, path: Path, case: Case) -> bool:
    named = str(path) in message and (case.file is None or case.file in message)
    return named and re.search(rf"(?<!\w){case.record}(?!\w)", message) is not None


@pytest.mark.parametrize("case", BROKEN_CASES, ids=lambda c: c.name)
def test_error_policy_stops_at_construction_naming_file_and_record(tmp_path, case):
    path = _build(tmp_path, case)
    with pytest.raises(BadRecordError, match=f": {case.count} broken record") as info:
        CocoInstanceDataset(path, on_bad_record="error")
    assert _names_file_and_record(str(info.value), path, case), str(info.value)


@pytest.mark.parametrize("case", BROKEN_CASES, ids=lambda c: c.name)
def test_skip_policy_drops_counts_and_warns(tmp_path, case):
    path = _build(tmp_path, case)
    with pytest.warns(BadRecordWarning, match=f"dropped {case.count} record"):
        dataset = CocoInstanceDataset(path, on_bad_record="skip")
    assert len(dataset.skipped) == case.count
    assert _names_file_and_record(dataset.skipped[0], path, case), dataset.skipped[0]
    assert tuple(dataset.image_ids) == case.images
    assert _kept_annotations(dataset) == case.annotations
    loaded = [len(sample.instances) for sample in dataset]
    assert sum(loaded) == len(case.annotations)


@pytest.mark.parametrize("case", DROPPED_CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("policy", ["error", "skip"])
def test_zero_area_masks_are_dropped_with_a_warning_under_both_policies(tmp_path, case, policy):
    path = _build(tmp_path, case)
    with pytest.warns(BadRecordWarning, match="dropped 1 record"):
        dataset = CocoInstanceDataset(path, on_bad_record=policy)
    assert len(dataset.skipped) == 1 and "zero-area" in dataset.skipped[0]
    assert _names_file_and_record(dataset.skipped[0], path, case)
    assert WHY_EMPTY[case.name] in dataset.skipped[0], dataset.skipped[0]
    assert _kept_annotations(dataset) == case.annotations
    assert tuple(dataset.image_ids) == case.images


def test_every_broken_record_is_listed_at_once(tmp_path):
    path, coco = _write_base(tmp_path)
    (tmp_path / "images/b.png").unlink()
    _ann(coco, 1)["category_id"] = 9
    _ann(coco, 6)["segmentation"] = {"size": [3, 3], "counts": "0"}
    path.write_text(json.dumps(coco))
    with pytest.raises(BadRecordError, match="3 broken record") as info:
        CocoInstanceDataset(path)
    for record in ("image 2", "annotation 1 of image 1", "annotation 6 of image 3"):
        assert record in str(info.value)


def test_polygon_partly_outside_is_clipped_as_pycocotools_does(tmp_path):
    path, coco = _write_base(tmp_path)
    partly = [[-6.0, -3.0, 10.0, -3.0, 10.0, 8.0, -6.0, 8.0]]
    _ann(coco, 2)["segmentation"] = partly
    path.write_text(json.dumps(coco))
    sample = CocoInstanceDataset(path)[0]
    oracle = mask_utils.decode(mask_utils.frPyObjects(partly, H, W))[..., 0]
    assert torch.equal(sample.instances.masks[1], torch.from_numpy(oracle).bool())
    assert sample.instances.masks[1][:8, :10].all() and sample.instances.masks[1].sum() == 80


def _damage_pixels(path: Path) -> None:
    """Flip bytes in the middle of the PNG data: header and end marker stay intact."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(255 - b for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))


def test_damaged_pixels_fail_at_load_naming_file_and_image_under_error(tmp_path):
    path, coco = _write_base(tmp_path)
    path.write_text(json.dumps(coco))
    _damage_pixels(tmp_path / "images/b.png")
    dataset = CocoInstanceDataset(path)  # the construction checks cannot see it
    assert dataset[0].image_id == 1
    with pytest.raises(ValueError, match=rf"{path}: image 2: cannot read image file .*b\.png"):
        dataset[1]


def test_damaged_pixels_are_replaced_and_counted_across_workers_under_skip(tmp_path):
    path, coco = _write_base(tmp_path)
    path.write_text(json.dumps(coco))
    _damage_pixels(tmp_path / "images/b.png")
    dataset = CocoInstanceDataset(path, on_bad_record="skip")
    assert dataset.skipped == []
    loader = DataLoader(dataset, batch_size=1, num_workers=2, collate_fn=collate_samples)
    ids = [batch[0].image_id for batch in loader]
    assert ids == [1, 3, 3]  # image 2 replaced by the next loadable image
    assert len(dataset.skipped) == 1
    assert str(path) in dataset.skipped[0] and "image 2" in dataset.skipped[0]
    assert "b.png could not be decoded when loaded" in dataset.skipped[0]


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_whole_file_problems_raise_under_both_policies(tmp_path, policy):
    path, coco = _write_base(tmp_path)
    with pytest.raises(FileNotFoundError, match=rf"annotation file {path} does not exist"):
        CocoInstanceDataset(path, on_bad_record=policy)
    path.write_text('{"images": [')
    with pytest.raises(ValueError, match=rf"annotation file {path} is not valid JSON"):
        CocoInstanceDataset(path, on_bad_record=policy)
    path.write_text(json.dumps(coco | {"images": coco["images"] + coco["images"][:1]}))
    with pytest.raises(ValueError, match=rf"{path}: image id 1 appears twice"):
        CocoInstanceDataset(path, on_bad_record=policy)
    path.write_text(json.dumps(coco | {"categories": [{"name": "cat"}]}))
    with pytest.raises(ValueError, match=rf"{path}: categories\[0\] needs an integer 'id'"):
        CocoInstanceDataset(path, on_bad_record=policy)
    path.write_text(json.dumps(coco | {"annotations": {"1": {}}}))
    with pytest.raises(ValueError, match=rf"{path}: 'annotations' must be a list"):
        CocoInstanceDataset(path, on_bad_record=policy)


def test_valid_unusual_images_load(tmp_path):
    path, coco = _write_base(tmp_path)
    gray16 = (np.arange(H * W).reshape(H, W) * 85).astype(np.uint16)  # up to 65195
    images = {
        "gray.png": Image.fromarray(np.full((H, W), 77, dtype=np.uint8)),
        "rgba.png": Image.fromarray(np.full((H, W, 4), (10, 20, 30, 0), dtype=np.uint8)),
        "gray16.png": Image.fromarray(gray16),
    }
    for k, (name, image) in enumerate(images.items(), start=4):
        image.save(tmp_path / "images" / name)
        coco["images"].append({"id": k, "file_name": name, "height": H, "width": W})
    path.write_text(json.dumps(coco))
    dataset = CocoInstanceDataset(path, image_ids=[4, 5, 6])
    gray, rgba, sixteen = dataset[0], dataset[1], dataset[2]
    assert all(len(s.instances) == 0 and s.instances.image_size == (H, W) for s in dataset)
    assert torch.allclose(gray.image, torch.full((3, H, W), 77 / 255))
    assert rgba.image[:, 0, 0].tolist() == pytest.approx([10 / 255, 20 / 255, 30 / 255])
    expected = torch.from_numpy(gray16 / 65535).float().expand(3, H, W)
    torch.testing.assert_close(sixteen.image, expected)
    assert sixteen.image.max() > 0.99  # Pillow's RGB conversion would clip this at 255/65535


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_unlabeled_sets_apply_the_same_image_checks(tmp_path, policy):
    path, coco = _write_base(tmp_path)
    path.write_text(json.dumps(coco))
    _truncate(tmp_path / "images/a.png")
    (tmp_path / "images/c.jpg").unlink()
    for source in (path, tmp_path / "images"):
        broken = 2 if source == path else 1  # a folder lists only the files that exist
        if policy == "error":
            with pytest.raises(BadRecordError, match=f"{broken} broken record") as info:
                UnlabeledImageDataset(source)
            assert str(info.value).startswith(f"{source}: ") and "a.png" in str(info.value)
            continue
        with pytest.warns(BadRecordWarning):
            pool = UnlabeledImageDataset(source, on_bad_record="skip")
        assert [s.file_name for s in pool] == ["b.png"]
        assert len(pool.skipped) == broken


def test_experiment_data_collects_every_skipped_record(tmp_path):
    path = _build(tmp_path, BROKEN_CASES[0])  # garbage a.png
    val_root = tmp_path / "val"
    val_path = _build(val_root, DROPPED_CASES[0])  # zero-area annotation 5
    cfg = DataConfig(
        labeled_annotations=str(path),
        split=1,
        val_annotations=str(val_path),
        on_bad_record="skip",
    )
    with pytest.warns(BadRecordWarning):
        data = load_experiment_data(cfg, progress=False)
    reasons = data.skipped_records
    assert len(reasons) == 2
    assert reasons[0].startswith(f"{path}: image 1:")
    assert reasons[1].startswith(f"{val_path}: annotation 5 of image 3:")
    assert len(data.labeled) + len(data.unlabeled) == 2
    strict = DataConfig(labeled_annotations=str(path), split=1)
    with pytest.raises(BadRecordError, match=rf"{path}: 1 broken record"):
        load_experiment_data(strict, progress=False)
