"""Labeled/unlabeled splits, id lists and the `castseg split` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from castseg.cli import main
from castseg.data.splits import read_id_list, split_labeled, write_id_list


@pytest.fixture
def skewed_file(tmp_path: Path) -> Path:
    """46 images: 40 mostly of category 1, 3 of category 2, 1 of category 3, 2 without objects."""
    majority = [1] * 40 + [2] * 3 + [3] + [None] * 2
    images, annotations = [], []
    for image_id, category in enumerate(majority, start=10):
        images.append({"id": image_id, "file_name": f"sub/img_{image_id}.png"})
        if category is not None:
            # a minority category too, so "most frequent" is what decides the stratum
            for cat in (category, category, 1 if category != 1 else 2):
                annotations.append({"image_id": image_id, "category_id": cat, "iscrowd": 0})
    # a crowd region does not count towards the most frequent category
    annotations += [{"image_id": 53, "category_id": 2, "iscrowd": 1}] * 3
    for i, ann in enumerate(annotations, start=1):
        ann["id"] = i
    categories = [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]
    path = tmp_path / "skewed.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return path


def _classes(path: Path, ids: list[int]) -> set[int]:
    anns = json.loads(path.read_text())["annotations"]
    return {a["category_id"] for a in anns if a["image_id"] in ids and not a["iscrowd"]}


def test_split_is_a_reproducible_partition(skewed_file):
    labeled, unlabeled = split_labeled(skewed_file, 0.25, seed=5)
    assert (labeled, unlabeled) == split_labeled(skewed_file, 0.25, seed=5)
    assert labeled != split_labeled(skewed_file, 0.25, seed=6)[0]
    assert labeled == sorted(labeled) and unlabeled == sorted(unlabeled)
    assert sorted(labeled + unlabeled) == list(range(10, 56))
    assert len(labeled) == round(0.25 * 46)


def test_fraction_and_count(skewed_file):
    assert len(split_labeled(skewed_file, 7, seed=0)[0]) == 7
    assert len(split_labeled(skewed_file, 46, seed=0)[1]) == 0
    assert len(split_labeled(skewed_file, 0.001, seed=0)[0]) == 1  # never an empty labeled set
    for bad in (0, 47, 0.0, 1.0, 1.5, True, "0.1"):
        with pytest.raises(ValueError):
            split_labeled(skewed_file, bad, seed=0)


def test_stratified_split_labels_every_class(skewed_file):
    for seed in range(10):
        labeled, _ = split_labeled(skewed_file, 4, seed=seed, stratify=True)
        assert _classes(skewed_file, labeled) == {1, 2, 3}
        assert 53 in labeled  # the only image whose most frequent category is 3
        assert len(labeled) == 4
        assert 54 in labeled or 55 in labeled  # images without objects are a stratum too
    # without stratification the rare class is usually missed
    misses = [
        3 not in _classes(skewed_file, split_labeled(skewed_file, 4, seed=s)[0]) for s in range(10)
    ]
    assert sum(misses) >= 5
    labeled, _ = split_labeled(skewed_file, 0.5, seed=0, stratify=True)
    assert len(labeled) == 23 and 20 <= sum(i < 50 for i in labeled) <= 21  # proportional


def test_stratify_with_fewer_labels_than_strata(skewed_file):
    labeled, unlabeled = split_labeled(skewed_file, 2, seed=0, stratify=True)
    assert len(labeled) == 2 and len(unlabeled) == 44


def test_id_list_round_trip_and_file_names(tmp_path, skewed_file):
    write_id_list(tmp_path / "out" / "ids.txt", [12, 10, 33])
    assert read_id_list(tmp_path / "out" / "ids.txt") == [12, 10, 33]
    names = tmp_path / "names.txt"
    names.write_text("# chosen by hand\nsub/img_11.png\n\nimg_20.png\n15\n")
    assert read_id_list(names, skewed_file) == [11, 20, 15]
    with pytest.raises(ValueError, match="pass the annotation file"):
        read_id_list(names)
    names.write_text("img_11.png\nimg_99.png\n99\n")
    with pytest.raises(ValueError, match=r"names\.txt: 2 entries.*\['img_99\.png', '99'\]"):
        read_id_list(names, skewed_file)


def test_cli_split_writes_both_lists(tmp_path, skewed_file, capsys):
    out = tmp_path / "split"
    argv = ["split", str(skewed_file), "--labeled", "0.25", "--seed", "3", "--stratify"]
    assert main([*argv, "--out", str(out)]) == 0
    labeled, unlabeled = split_labeled(skewed_file, 0.25, seed=3, stratify=True)
    assert read_id_list(out / "labeled.txt") == labeled
    assert read_id_list(out / "unlabeled.txt") == unlabeled
    printed = capsys.readouterr().out
    assert "labeled:   12 images" in printed and "unlabeled: 34 images" in printed
    assert main(["split", str(skewed_file), "--labeled", "5", "--out", str(out)]) == 0
    assert len(read_id_list(out / "labeled.txt")) == 5
    assert main(["split", str(skewed_file), "--labeled", "2.0", "--out", str(out)]) == 2
    assert "fraction must lie in (0, 1)" in capsys.readouterr().err
