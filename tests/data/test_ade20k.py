"""ADE20K instance-benchmark conversion on a tiny tree in the official formats."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from castseg.data.ade20k import CATEGORIES, INSTANCE_CLASSES, convert_ade20k, convert_split
from castseg.data.coco import CategoryMap

H, W = 20, 28
BASE = "ADEChallengeData2016"


def instance_png(seed: int) -> np.ndarray:
    """[H, W, 3] uint8: R = benchmark class (1..100), G = instance id, B unused (noise)."""
    pixels = np.zeros((H, W, 3), dtype=np.uint8)
    pixels[..., 2] = np.random.default_rng(seed).integers(0, 255, (H, W))
    pixels[2:9, 3:10, :2] = (4, 1)  # person
    pixels[10:18, 3:12, :2] = (9, 2)  # car
    pixels[4:16, 14 + seed : 20 + seed, :2] = (9, 7)  # another car, instance ids need not be 1..n
    pixels[0:3, 20:28, :2] = (100, 3)  # flag
    pixels[18:20, 20:28, 0] = 6  # a class without an instance id: not an instance
    return pixels


def write_tree(root: Path, counts: dict[str, int]) -> dict[str, np.ndarray]:
    """jpg images and RGB annotations_instance PNGs; returns image stem → PNG pixels."""
    written = {}
    for split, folder in (("train", "training"), ("val", "validation")):
        for n in range(1, counts[split] + 1):
            stem = f"ADE_{split}_{n:08d}"
            image = root / BASE / "images" / folder / f"{stem}.jpg"
            png = root / BASE / "annotations_instance" / folder / f"{stem}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            png.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((H, W, 3), 30 * n, dtype=np.uint8)).save(image)
            written[stem] = instance_png(n)
            Image.fromarray(written[stem]).save(png)
    return written


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "ade"
    return root, write_tree(root, {"train": 2, "val": 1})


def test_categories_follow_mask2former():
    names = [name for name, _ in INSTANCE_CLASSES]
    sceneparse_ids = [i for _, i in INSTANCE_CLASSES]
    assert len(names) == len(set(names)) == 100
    assert sceneparse_ids == sorted(set(sceneparse_ids))  # increasing, no repeats
    assert (sceneparse_ids[0], sceneparse_ids[-1]) == (8, 150)
    # Mask2Former: category id = SceneParsing-150 id - 1
    by_name = {c["name"]: c["id"] for c in CATEGORIES}
    assert (by_name["bed"], by_name["person"], by_name["car"], by_name["flag"]) == (7, 12, 20, 149)
    # ids increase with the benchmark class, so castseg's class index is benchmark class - 1
    assert CategoryMap.from_categories(CATEGORIES).names == tuple(names)


def test_converted_masks_match_the_instance_png(tree, tmp_path):
    root, pixels_of = tree
    written = convert_ade20k(root, tmp_path / "out", progress=False)
    assert {s: p.name for s, p in written.items()} == {
        "train": "ade20k_instance_train.json",
        "val": "ade20k_instance_val.json",
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(written["train"]))
    assert len(coco.getCatIds()) == 100 and len(coco.getImgIds()) == 2
    for image in coco.loadImgs(coco.getImgIds()):
        assert (root / image["file_name"]).is_file()
        assert image["file_name"].startswith(f"{BASE}/images/training/")
        assert (image["height"], image["width"]) == (H, W)
        pixels = pixels_of[Path(image["file_name"]).stem]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert len(anns) == 4
        for ann in anns:
            mask = coco.annToMask(ann).astype(bool)
            instance = np.unique(pixels[..., 1][mask])
            assert len(instance) == 1 and instance[0] != 0
            assert np.array_equal(mask, pixels[..., 1] == instance[0])
            benchmark_class = int(np.unique(pixels[..., 0][mask])[0])
            assert ann["category_id"] == INSTANCE_CLASSES[benchmark_class - 1][1] - 1
            assert ann["iscrowd"] == 0 and ann["area"] == mask.sum()


def test_missing_folders_and_files_are_named(tree, tmp_path):
    root, _ = tree
    out = tmp_path / "out"
    (root / BASE / "annotations_instance" / "validation" / "ADE_val_00000001.png").unlink()
    with pytest.raises(FileNotFoundError, match="ADE_val_00000001.png"):
        convert_ade20k(root, out, progress=False)
    (root / BASE / "images" / "validation" / "ADE_val_00000001.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"images/validation/\*\.jpg"):
        convert_ade20k(root, out, progress=False)
    (root / BASE / "annotations_instance" / "training").rename(tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match=f"folder {BASE}/annotations_instance/training "):
        convert_ade20k(root, out, progress=False)
    assert not out.exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: Image.fromarray(p[..., 0]), "PNG mode 'L'"),
        (lambda p: Image.fromarray(p[:, :-1]), f"{W - 1}×{H} \\(W×H\\) but its image is {W}×{H}"),
        (lambda p: Image.fromarray(_set(p, (0, 0), (5, 1))), r"instance 1 .* classes .*\[4, 5\]"),
        (lambda p: Image.fromarray(_set(p, (0, 0), (101, 9))), "class 101 in the R channel"),
    ],
)
def test_malformed_png_is_an_error(tree, edit, message):
    root, pixels_of = tree
    png = root / BASE / "annotations_instance" / "validation" / "ADE_val_00000001.png"
    edit(pixels_of["ADE_val_00000001"]).save(png)
    with pytest.raises(ValueError, match=message):
        convert_split(root, "val", progress=False)


def _set(pixels: np.ndarray, at: tuple[int, int], red_green: tuple[int, int]) -> np.ndarray:
    edited = pixels.copy()
    edited[at[0], at[1], :2] = red_green
    return edited
