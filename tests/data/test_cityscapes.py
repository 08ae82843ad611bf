"""Cityscapes conversion on a tiny tree in the official formats, checked with pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from castseg.data.cityscapes import (
    THING_LABEL_IDS,
    THING_NAMES,
    convert_cityscapes,
    convert_split,
    frame_key,
    instance_file_for,
    instance_files,
)
from castseg.data.coco import CocoInstanceDataset

H, W = 24, 32


def instance_ids(seed: int) -> np.ndarray:
    """[H, W] uint16 instanceIds: road 7, building 11, two cars, a person with k = 0, a bicycle,
    a car group (26, crowd), a caravan (29001, not an evaluated class)."""
    ids = np.full((H, W), 7, dtype=np.uint16)
    ids[:4] = 11
    ids[5:12, 2:9] = 26001
    ids[5:12, 10 + seed : 16 + seed] = 26002
    ids[14:22, 2:6] = 24000
    ids[14:20, 8:14] = 33005
    ids[20:24, 20:30] = 26
    ids[4:8, 26:31] = 29001
    return ids


def write_tree(root: Path, frames: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Official files for frames {split: [key, ...]}: 16-bit instanceIds PNG (Pillow mode I;16)
    and an RGB leftImg8bit PNG; returns key → instance ids."""
    written = {}
    for split, keys in frames.items():
        for n, key in enumerate(keys):
            city = key.split("_")[0]
            ids = instance_ids(n)
            gt = root / "gtFine" / split / city / f"{key}_gtFine_instanceIds.png"
            image = root / "leftImg8bit" / split / city / f"{key}_leftImg8bit.png"
            gt.parent.mkdir(parents=True, exist_ok=True)
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ids).save(gt)
            Image.fromarray(np.full((H, W, 3), 40 * n, dtype=np.uint8)).save(image)
            written[key] = ids
    return written


FRAMES = {
    "train": ["aachen_000000_000019", "bremen_000001_000019"],
    "val": ["frankfurt_000000_000294"],
}


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "cityscapes"
    return root, write_tree(root, FRAMES)


def test_fixture_png_is_16_bit_like_the_official_files(tree):
    root, _ = tree
    with Image.open(instance_files(root, "val")[0]) as png:
        assert png.mode == "I;16"


def test_converted_masks_match_the_instance_pixels(tree, tmp_path):
    root, ids_of = tree
    written = convert_cityscapes(root, tmp_path / "out", progress=False)
    assert {s: p.name for s, p in written.items()} == {
        "train": "cityscapes_train.json",
        "val": "cityscapes_val.json",
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(written["train"]))
    assert [c["id"] for c in coco.loadCats(coco.getCatIds())] == list(THING_LABEL_IDS)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == [
        "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
    ]  # fmt: skip
    assert len(coco.getImgIds()) == 2
    for image in coco.loadImgs(coco.getImgIds()):
        assert (root / image["file_name"]).is_file()
        assert image["file_name"].startswith("leftImg8bit/train/")
        ids = ids_of[frame_key(image["file_name"])]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        expected = {26001: (26, 0), 26002: (26, 0), 24000: (24, 0), 33005: (33, 0), 26: (26, 1)}
        assert len(anns) == len(expected)  # road, building and the caravan are left out
        for ann in anns:
            mask = coco.annToMask(ann).astype(bool)
            values = np.unique(ids[mask])
            assert len(values) == 1 and np.array_equal(mask, ids == values[0])
            assert (ann["category_id"], ann["iscrowd"]) == expected[int(values[0])]
            ys, xs = np.nonzero(mask)
            assert ann["area"] == mask.sum()
            assert ann["bbox"] == [
                xs.min(),
                ys.min(),
                xs.max() - xs.min() + 1,
                ys.max() - ys.min() + 1,
            ]
    ann_ids = [a["id"] for a in json.loads(written["train"].read_text())["annotations"]]
    assert ann_ids == list(range(1, len(ann_ids) + 1))


def test_castseg_loader_reads_the_converted_json(tree, tmp_path):
    root, ids_of = tree
    data = convert_split(root, "val", progress=False)
    path = tmp_path / "val.json"
    path.write_text(json.dumps(data))
    sample = CocoInstanceDataset(path, image_root=root)[0]
    ids = ids_of["frankfurt_000000_000294"]
    assert sample.image.shape == (3, H, W)
    assert sorted(sample.instances.labels.tolist()) == sorted(
        THING_LABEL_IDS.index(v // 1000) for v in (26001, 26002, 24000, 33005)
    )
    assert np.array_equal(sample.instances.ignore.numpy(), ids == 26)  # the car group


def test_frame_names():
    assert frame_key("aachen_000000_000019_gtFine_instanceIds.png") == "aachen_000000_000019"
    assert frame_key("a/b/bremen_000001_000019_leftImg8bit.png") == "bremen_000001_000019"
    with pytest.raises(ValueError, match="not a Cityscapes file name"):
        frame_key("ADE_train_00000001.jpg")
    assert instance_file_for(
        Path("/data/cs"), "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"
    ) == Path("/data/cs/gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_instanceIds.png")
    with pytest.raises(ValueError, match="relative to the root"):
        instance_file_for(Path("/data/cs"), "frankfurt_000000_000294_leftImg8bit.png")
    assert THING_NAMES[THING_LABEL_IDS.index(26)] == "car"


def test_missing_folders_and_files_are_named(tree, tmp_path):
    root, _ = tree
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert_cityscapes(tmp_path / "nowhere", out, progress=False)
    (
        root / "leftImg8bit" / "val" / "frankfurt" / "frankfurt_000000_000294_leftImg8bit.png"
    ).unlink()
    with pytest.raises(FileNotFoundError, match="frankfurt_000000_000294_leftImg8bit.png"):
        convert_cityscapes(root, out, progress=False)
    (
        root / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000294_gtFine_instanceIds.png"
    ).unlink()
    with pytest.raises(FileNotFoundError, match=r"gtFine/val/<city>/\*_gtFine_instanceIds.png"):
        convert_cityscapes(root, out, progress=False)
    for folder in ("leftImg8bit/val", "gtFine/val"):
        (root / folder).rename(tmp_path / folder.replace("/", "_"))
        with pytest.raises(FileNotFoundError, match=f"folder {folder} "):
            convert_cityscapes(root, out, progress=False)
    assert not out.exists()  # nothing written when a split is broken


def test_wrong_png_mode_or_size_is_an_error(tree, tmp_path):
    root, _ = tree
    gt = instance_files(root, "val")[0]
    Image.fromarray(np.zeros((H, W), dtype=np.uint8)).save(gt)  # 8-bit, e.g. a labelIds PNG
    with pytest.raises(ValueError, match=r"frankfurt_000000_000294_gtFine.*mode 'L'"):
        convert_cityscapes(root, tmp_path / "out", progress=False)
    Image.fromarray(np.zeros((H, W + 2), dtype=np.uint16)).save(gt)
    with pytest.raises(ValueError, match=f"{W + 2}×{H} \\(W×H\\) but its image is {W}×{H}"):
        convert_split(root, "val", progress=False)
    assert not (tmp_path / "out").exists()
