"""`castseg convert cityscapes|ade20k` on tiny official-format trees: jsons, splits, errors."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from castseg.commands import convert
from castseg.data.splits import read_id_list

H, W = 16, 20


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="castseg")
    convert.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def run(argv: list[str]) -> str:
    """Run the command; its printed output."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert convert.run(parse(argv)) == 0
    return printed.getvalue()


def save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def cityscapes_tree(root: Path, counts: dict[str, int]) -> Path:
    for split, count in counts.items():
        for n in range(count):
            key = f"ulm_{n:06d}_000019"
            ids = np.full((H, W), 7, dtype=np.uint16)
            ids[2:8, 2 + n : 9 + n] = 26001  # a car
            save(root / f"gtFine/{split}/ulm/{key}_gtFine_instanceIds.png", ids)
            save(root / f"leftImg8bit/{split}/ulm/{key}_leftImg8bit.png", np.zeros((H, W, 3), "u1"))
    return root


def ade20k_tree(root: Path, counts: dict[str, int]) -> Path:
    for split, folder in (("train", "training"), ("val", "validation")):
        for n in range(1, counts[split] + 1):
            stem = f"ADE_{split}_{n:08d}"
            pixels = np.zeros((H, W, 3), dtype=np.uint8)
            pixels[3:9, 4:12, :2] = (1 + n % 3, 1)  # bed, windowpane or cabinet
            base = root / "ADEChallengeData2016"
            save(base / f"annotations_instance/{folder}/{stem}.png", pixels)
            save(base / f"images/{folder}/{stem}.jpg", np.zeros((H, W, 3), dtype=np.uint8))
    return root


def test_cityscapes_jsons_and_splits(tmp_path):
    root = cityscapes_tree(tmp_path / "cs", {"train": 4, "val": 1})
    published = tmp_path / "perc_25.txt"  # Guided Distillation's naming
    published.write_text("ulm_000002_000019_gtFine_instanceIds.png\n")
    out = tmp_path / "out"
    printed = run(
        ["convert", "cityscapes", str(root), "--out", str(out), "--percents", "50", "10",
         "--split-seed", "0", "1", "--split-file", str(published), "--no-progress"]
    )  # fmt: skip
    train = out / "cityscapes_train.json"
    assert len(json.loads(train.read_text())["annotations"]) == 4
    assert len(json.loads((out / "cityscapes_val.json").read_text())["images"]) == 1
    for seed in (0, 1):
        for percent, labeled in ((50, 2), (10, 1)):
            folder = out / "splits" / f"cityscapes_{percent}pct_seed{seed}"
            ids = read_id_list(folder / "labeled.txt", train)
            rest = read_id_list(folder / "unlabeled.txt", train)
            assert len(ids) == labeled and sorted(ids + rest) == [1, 2, 3, 4]
            assert f"split {folder.name}: {labeled} labeled / {4 - labeled} unlabeled" in printed
    assert read_id_list(out / "splits" / "perc_25" / "labeled.txt", train) == [3]
    assert read_id_list(out / "splits" / "perc_25" / "unlabeled.txt", train) == [1, 2, 4]


def test_ade20k_jsons_and_split(tmp_path):
    root = ade20k_tree(tmp_path / "ade", {"train": 6, "val": 1})
    out = tmp_path / "out"
    run(["convert", "ade20k", str(root), "--out", str(out), "--labeled", "3", "--unlabeled", "2",
         "--no-progress"])  # fmt: skip
    train = out / "ade20k_instance_train.json"
    data = json.loads(train.read_text())
    assert {a["category_id"] for a in data["annotations"]} == {7, 8, 10}  # 0-based ADE-150 ids
    assert (out / "ade20k_instance_val.json").is_file()
    folder = out / "splits" / "ade20k_3_2_seed0"
    labeled = read_id_list(folder / "labeled.txt", train)
    unlabeled = read_id_list(folder / "unlabeled.txt", train)
    assert (len(labeled), len(unlabeled)) == (3, 2) and not set(labeled) & set(unlabeled)
    # stratified: each of the three classes has its own labeled image
    classes = {a["category_id"] for a in data["annotations"] if a["image_id"] in labeled}
    assert classes == {7, 8, 10}


def test_errors_name_what_is_missing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        convert.run(parse(["convert", "cityscapes", str(tmp_path / "nowhere"), "--out", str(out)]))
    root = cityscapes_tree(tmp_path / "cs", {"train": 2, "val": 1})
    with pytest.raises(FileNotFoundError, match="split files not found.*gone.txt"):
        convert.run(
            parse(["convert", "cityscapes", str(root), "--out", str(out),
                   "--split-file", str(tmp_path / "gone.txt")])
        )  # fmt: skip
    with pytest.raises(FileNotFoundError, match="folder ADEChallengeData2016/images/training"):
        convert.run(parse(["convert", "ade20k", str(root), "--out", str(out)]))
    assert not out.exists()
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        parse(["convert", "coco", str(root), "--out", str(out)])
