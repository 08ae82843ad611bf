"""The paper's Cityscapes / ADE20K splits and split files published by prior work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from castseg.data.paper_splits import (
    ade20k_split,
    cityscapes_split,
    external_split,
    percent_count,
    write_split,
)
from castseg.data.splits import read_id_list

CITIES = ("aachen", "bremen", "zurich")


def write_json(path: Path, images: list[dict], annotations: list[dict] | None = None) -> Path:
    categories = [{"id": c, "name": f"c{c}"} for c in range(1, 101)]
    data = {"images": images, "annotations": annotations or [], "categories": categories}
    path.write_text(json.dumps(data))
    return path


def cityscapes_images(count: int) -> list[dict]:
    """Records named like `castseg convert cityscapes` names them."""
    images = []
    for i in range(count):
        city = CITIES[i % len(CITIES)]
        key = f"{city}_{i // len(CITIES):06d}_000019"
        images.append({"id": i + 1, "file_name": f"leftImg8bit/train/{city}/{key}_leftImg8bit.png"})
    return images


@pytest.fixture(scope="module")
def cityscapes_train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 975 train images, as many as Cityscapes has."""
    folder = tmp_path_factory.mktemp("cityscapes")
    return write_json(folder / "cityscapes_train.json", cityscapes_images(2975))


def test_percent_count_rounds_halves_up():
    assert percent_count(10, 2975) == 298  # 297.5: the paper's 298 labeled images
    assert (percent_count(5, 2975), percent_count(30, 2975)) == (149, 893)  # 148.75, 892.5
    assert percent_count(5, 4) == 1  # never an empty labeled set
    for bad in (0, 100, -5):
        with pytest.raises(ValueError, match="percentage"):
            percent_count(bad, 10)


def test_cityscapes_ten_percent_is_298_of_2975(cityscapes_train):
    split = cityscapes_split(cityscapes_train, 10, seed=0)
    assert split.name == "cityscapes_10pct_seed0"
    assert (len(split.labeled), len(split.unlabeled)) == (298, 2677)
    assert sorted(split.labeled + split.unlabeled) == list(range(1, 2976))
    assert split == cityscapes_split(cityscapes_train, 10, seed=0)
    assert split.labeled != cityscapes_split(cityscapes_train, 10, seed=1).labeled
    assert [len(cityscapes_split(cityscapes_train, p, seed=0).labeled) for p in (5, 30)] == [
        149,
        893,
    ]


def test_ade20k_split_is_stratified_1000_and_2537(tmp_path):
    """3 600 images over 100 classes, class c on 6 + c // 2 images (a long tail)."""
    rng = np.random.default_rng(0)
    owners = np.concatenate([np.full(6 + c // 2, c) for c in range(1, 101)])
    images, annotations = [], []
    for image_id in range(1, 3601):
        images.append({"id": image_id, "file_name": f"ADE_train_{image_id:08d}.jpg"})
        # images beyond the owned ones hold no instance at all
        if image_id <= len(owners):
            annotations.append(
                {"id": image_id, "image_id": image_id, "category_id": int(owners[image_id - 1])}
            )
    order = rng.permutation(len(images))
    path = write_json(tmp_path / "ade.json", [images[i] for i in order], annotations)
    split = ade20k_split(path, seed=3)
    assert split.name == "ade20k_1000_2537_seed3"
    assert (len(split.labeled), len(split.unlabeled)) == (1000, 2537)
    assert not set(split.labeled) & set(split.unlabeled)
    labeled_classes = {a["category_id"] for a in annotations if a["image_id"] in split.labeled}
    assert labeled_classes == set(range(1, 101))  # rare classes are labeled too
    assert split == ade20k_split(path, seed=3)
    rest = ade20k_split(path, seed=3, unlabeled=None)
    assert rest.labeled == split.labeled and len(rest.unlabeled) == 3600 - 1000
    with pytest.raises(ValueError, match="2601 unlabeled images requested but only 2600"):
        ade20k_split(path, seed=3, unlabeled=2601)


def test_guided_distillation_split_file_resolves_by_frame(tmp_path):
    """Guided Distillation publishes gtFine names; castseg's json names leftImg8bit images."""
    path = write_json(tmp_path / "train.json", cityscapes_images(30))
    split_file = tmp_path / "perc_10.txt"
    split_file.write_text(
        "zurich_000000_000019_gtFine_instanceIds.png\n"
        "aachen_000003_000019_gtFine_instanceIds.png\n"
        "\n# a comment\n"
        "bremen_000001_000019_leftImg8bit.png\n"
        "leftImg8bit/train/aachen/aachen_000009_000019_leftImg8bit.png\n"
    )
    split = external_split(split_file, path)
    # ids: aachen i → 3 i + 1, bremen i → 3 i + 2, zurich i → 3 i + 3
    assert split.name == "perc_10"
    assert split.labeled == [3, 5, 10, 28]
    assert split.unlabeled == sorted(set(range(1, 31)) - {3, 5, 10, 28})
    # read_id_list knows the json's file names but not the other files of a frame
    with pytest.raises(ValueError, match="aachen_000003_000019_gtFine_instanceIds.png"):
        read_id_list(split_file, path)


def test_external_split_errors(tmp_path):
    path = write_json(tmp_path / "train.json", cityscapes_images(6))
    split_file = tmp_path / "split.txt"
    split_file.write_text("aachen_000000_000019_gtFine_instanceIds.png\nulm_000001_000019.png\n")
    with pytest.raises(ValueError, match=r"1 entries name no single image.*ulm_000001_000019"):
        external_split(split_file, path)
    split_file.write_text("aachen_000000_000019_leftImg8bit.png\naachen_000000_000019\n")
    with pytest.raises(ValueError, match="twice"):
        external_split(split_file, path)
    split_file.write_text("# nothing\n")
    with pytest.raises(ValueError, match="names no images"):
        external_split(split_file, path)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        external_split(tmp_path / "missing.txt", path)


def test_written_split_reads_back(cityscapes_train, tmp_path):
    split = cityscapes_split(cityscapes_train, 5, seed=2)
    folder = write_split(split, tmp_path / "splits")
    assert folder == tmp_path / "splits" / "cityscapes_5pct_seed2"
    assert read_id_list(folder / "labeled.txt", cityscapes_train) == split.labeled
    assert read_id_list(folder / "unlabeled.txt", cityscapes_train) == split.unlabeled
