"""COCO loading: masks checked against pycocotools, crowd handling, image modes and clear errors."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch.utils.data import DataLoader

from castseg.data.coco import CategoryMap, CocoInstanceDataset, UnlabeledImageDataset
from castseg.data.samples import collate_samples

H, W = 24, 32
CATEGORIES = [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}]  # unsorted on purpose


def _blob(seed: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    top, left = rng.integers(0, H // 2), rng.integers(0, W // 2)
    mask[top : top + rng.integers(3, H // 2), left : left + rng.integers(3, W // 2)] = 1
    mask[rng.integers(0, H), rng.integers(0, W)] = 1
    return mask


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """Column-major run lengths starting with zeros, written out by hand."""
    flat = mask.T.reshape(-1)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    return {"size": [H, W], "counts": ([0] if flat[0] else []) + counts}


def _compressed_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


POLYGON = [[2.0, 2.0, 20.0, 3.0, 12.0, 18.0], [25.0, 10.0, 30.0, 10.0, 30.0, 20.0, 25.0, 20.0]]


def _write(root: Path, images: dict[str, Image.Image], annotations: list[dict]) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i, (name, image) in enumerate(images.items(), start=1):
        image.save(root / "images" / name)
        records.append({"id": i, "file_name": name, "height": image.height, "width": image.width})
    for i, ann in enumerate(annotations, start=1):
        ann.setdefault("id", i)
        ann.setdefault("iscrowd", 0)
    coco = {"images": records, "annotations": annotations, "categories": CATEGORIES}
    (root / "instances.json").write_text(json.dumps(coco))
    return root / "instances.json"


def _rgb(seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8))


def _as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.tensor(np.array(image)).permute(2, 0, 1) / 255


@pytest.fixture
def dataset_file(tmp_path: Path) -> Path:
    images = {
        "a.png": _rgb(),
        "empty.png": _rgb(1),
        "gray.png": _rgb(2).convert("L"),
        "rgba.png": _rgb(3).convert("RGBA"),
    }
    annotations = [
        {"image_id": 1, "category_id": 7, "segmentation": _compressed_rle(_blob(0))},
        {"image_id": 1, "category_id": 3, "segmentation": _uncompressed_rle(_blob(1))},
        {"image_id": 1, "category_id": 3, "segmentation": POLYGON},
        {"image_id": 1, "category_id": 7, "segmentation": _compressed_rle(_blob(2)), "iscrowd": 1},
        {
            "image_id": 1,
            "category_id": 7,
            "segmentation": _uncompressed_rle(_blob(3)),
            "iscrowd": 1,
        },
        {"image_id": 3, "category_id": 3, "segmentation": _compressed_rle(_blob(4))},
    ]
    return _write(tmp_path, images, annotations)


def test_category_map_orders_by_id():
    categories = CategoryMap.from_categories(CATEGORIES)
    assert categories.names == ("dog", "cat") and len(categories) == 2
    assert [categories.to_contiguous(i) for i in (3, 7)] == [0, 1]
    assert [categories.to_coco(i) for i in (0, 1)] == [3, 7]
    with pytest.raises(ValueError, match="unknown category id 5"):
        categories.to_contiguous(5)
    with pytest.raises(ValueError, match="out of range"):
        categories.to_coco(2)


def test_masks_match_pycocotools_and_crowds_become_ignore(dataset_file):
    sample = CocoInstanceDataset(dataset_file)[0]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(dataset_file))
    oracle = [coco.annToMask(coco.anns[i]) for i in range(1, 6)]
    assert sample.image_id == 1 and sample.file_name == "a.png"
    assert sample.image.shape == (3, H, W) and sample.image.dtype == torch.float32
    torch.testing.assert_close(sample.image, _as_tensor(_rgb()))
    assert sample.instances.labels.tolist() == [1, 0, 0]
    for k in range(3):
        assert torch.equal(sample.instances.masks[k], torch.from_numpy(oracle[k]).bool())
    assert torch.equal(sample.instances.masks[0], torch.from_numpy(_blob(0)).bool())
    assert torch.equal(sample.instances.masks[1], torch.from_numpy(_blob(1)).bool())
    assert sample.instances.masks[2].sum() > 50  # both polygon parts are filled
    assert torch.equal(sample.instances.ignore, torch.from_numpy(oracle[3] | oracle[4]).bool())


def test_image_without_annotations_grayscale_and_rgba(dataset_file):
    dataset = CocoInstanceDataset(dataset_file)
    empty, gray, rgba = dataset[1], dataset[2], dataset[3]
    assert len(empty.instances) == 0 and empty.instances.image_size == (H, W)
    assert empty.instances.ignore is None
    assert gray.image.shape == (3, H, W)
    assert torch.equal(gray.image[0], gray.image[1]) and torch.equal(gray.image[1], gray.image[2])
    assert len(gray.instances) == 1
    torch.testing.assert_close(rgba.image, _as_tensor(_rgb(3)))


def test_image_ids_select_and_order_and_loader_batches(dataset_file):
    dataset = CocoInstanceDataset(dataset_file, image_ids=[4, 1])
    assert [s.image_id for s in dataset] == [4, 1]
    batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=collate_samples)))
    assert [s.file_name for s in batch] == ["rgba.png", "a.png"]
    with pytest.raises(ValueError, match=r"unknown image ids \[9\]"):
        CocoInstanceDataset(dataset_file, image_ids=[1, 9])


def test_image_root_defaults_to_images_folder_else_json_folder(tmp_path, dataset_file):
    assert CocoInstanceDataset(dataset_file).image_root == dataset_file.parent / "images"
    flat = tmp_path / "flat"
    flat.mkdir()
    _rgb().save(flat / "a.png")
    coco = {"images": [{"id": 5, "file_name": "a.png"}], "categories": CATEGORIES}
    (flat / "data.json").write_text(json.dumps(coco))
    sample = CocoInstanceDataset(flat / "data.json")[0]
    assert sample.image_id == 5 and len(sample.instances) == 0


def test_synthetic_world_loads(synthetic_world):
    dataset = CocoInstanceDataset(synthetic_world["target_val"])
    coco = json.loads(synthetic_world["target_val"].read_text())
    sample = dataset[2]
    anns = [a for a in coco["annotations"] if a["image_id"] == sample.image_id]
    oracle = mask_utils.decode([a["segmentation"] for a in anns]).transpose(2, 0, 1)
    assert len(dataset) == 8 and dataset.categories.names[0] == "disc"
    assert torch.equal(sample.instances.masks, torch.from_numpy(oracle).bool())
    assert sample.instances.labels.tolist() == [a["category_id"] - 1 for a in anns]


def test_unlabeled_from_folder_and_from_json(tmp_path, dataset_file):
    folder = tmp_path / "pool"
    folder.mkdir()
    for name in ("b.JPG", "a.png", "c.jpeg"):
        _rgb().save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    pool = UnlabeledImageDataset(folder)
    assert [(s.image_id, s.file_name) for s in pool] == [(0, "a.png"), (1, "b.JPG"), (2, "c.jpeg")]
    assert pool[1].instances is None and pool[1].image.shape == (3, H, W)
    from_json = UnlabeledImageDataset(dataset_file, image_ids=[2])
    assert len(from_json) == 1 and from_json[0].file_name == "empty.png"
    assert from_json[0].instances is None
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        UnlabeledImageDataset(tmp_path / "none")


def test_ground_truth_holds_the_kept_annotations_as_pycocotools_reads_them(dataset_file):
    dataset = CocoInstanceDataset(dataset_file, image_ids=[3, 1])
    truth = dataset.ground_truth()
    assert [i["id"] for i in truth["images"]] == [3, 1]
    assert truth["categories"] == sorted(CATEGORIES, key=lambda c: c["id"])
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = json.loads(json.dumps(truth))  # JSON-ready, like a file
        coco.createIndex()
    assert sorted(coco.anns) == [1, 2, 3, 4, 5, 6]
    for image_id, sample in ((3, dataset[0]), (1, dataset[1])):
        anns = [coco.anns[i] for i in coco.getAnnIds(imgIds=[image_id])]
        things = [a for a in anns if not a["iscrowd"]]
        for k, ann in enumerate(things):
            oracle = torch.from_numpy(coco.annToMask(ann)).bool()
            assert torch.equal(sample.instances.masks[k], oracle)
            assert ann["area"] == pytest.approx(float(oracle.sum()))
        labels = [dataset.categories.to_contiguous(a["category_id"]) for a in things]
        assert sample.instances.labels.tolist() == labels


def test_records_are_packed_and_load_in_worker_processes(dataset_file):
    dataset = CocoInstanceDataset(dataset_file)
    assert 0 < dataset.records.nbytes < 20_000  # ids, sizes and compressed masks, no pixels
    assert dataset.records[0].annotations[0].segmentation.area == int(_blob(0).sum())
    expected = [(s.image_id, len(s.instances)) for s in dataset]
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate_samples)
    loaded = [(s.image_id, len(s.instances)) for batch in loader for s in batch]
    assert loaded == expected == [(1, 3), (2, 0), (3, 1), (4, 0)]
    assert dataset.skipped == []
    with pytest.raises(IndexError):
        dataset[4]
