"""The synthetic world: determinism, scene statistics, domain gap and safe (re)generation."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from castseg.data import synthetic
from castseg.data.synthetic import CLASS_NAMES, WORLD_FILE, WorldSpec, generate_world
from castseg.data.synthetic_style import BROAD_REACH, DOMAIN_STYLES, domain_style

SMALL = {"source_train": 6, "target_val": 6}


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _load(annotation_file: Path) -> tuple[dict, dict[int, np.ndarray], dict[int, list[dict]]]:
    coco = json.loads(annotation_file.read_text())
    images = {
        im["id"]: np.asarray(Image.open(annotation_file.parent / "images" / im["file_name"]))
        for im in coco["images"]
    }
    anns: dict[int, list[dict]] = {i: [] for i in images}
    for ann in coco["annotations"]:
        anns[ann["image_id"]].append(ann)
    return coco, images, anns


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    first = generate_world(tmp_path / "a", WorldSpec(seed=3, counts=SMALL))
    generate_world(tmp_path / "b", WorldSpec(seed=3, counts=SMALL))
    generate_world(tmp_path / "c", WorldSpec(seed=4, counts=SMALL))
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert a["source_train/instances.json"] != c["source_train/instances.json"]
    assert a["target_val/images/000001.png"] != c["target_val/images/000001.png"]
    assert set(first) == set(SMALL)
    assert first["target_val"] == tmp_path / "a" / "target_val" / "instances.json"


def test_scenes_hold_2_to_15_disjoint_instances_of_all_classes(synthetic_world):
    labels = Counter()
    for annotation_file in synthetic_world.values():
        coco, images, anns = _load(annotation_file)
        assert [c["id"] for c in coco["categories"]] == [1, 2, 3, 4, 5]
        assert [c["name"] for c in coco["categories"]] == list(CLASS_NAMES)
        for image_id, image in images.items():
            assert image.shape == (112, 112, 3)
            assert 2 <= len(anns[image_id]) <= 15
            masks = mask_utils.decode([a["segmentation"] for a in anns[image_id]])
            assert masks.shape == (112, 112, len(anns[image_id]))
            assert masks.sum(axis=2).max() == 1  # visible masks never overlap
            for k, ann in enumerate(anns[image_id]):
                assert ann["area"] == masks[..., k].sum() >= 30
                assert ann["iscrowd"] == 0
                np.testing.assert_allclose(ann["bbox"], mask_utils.toBbox(ann["segmentation"]))
                labels[ann["category_id"]] += 1
    assert set(labels) == {1, 2, 3, 4, 5}


def test_same_class_instances_touch_or_overlap(synthetic_world):
    _, _, anns = _load(synthetic_world["source_train"])
    touching = 0
    for image_anns in anns.values():
        masks = mask_utils.decode([a["segmentation"] for a in image_anns]).transpose(2, 0, 1)
        grown = masks.astype(bool).copy()  # one-pixel dilation: occluded neighbours share a border
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
        grown[:, :, 1:] |= grown[:, :, :-1].copy()
        grown[:, :, :-1] |= grown[:, :, 1:].copy()
        for i in range(len(image_anns)):
            for j in range(i + 1, len(image_anns)):
                same = image_anns[i]["category_id"] == image_anns[j]["category_id"]
                touching += same and bool((grown[i] & masks[j]).any())
    assert touching >= 10


def _instance_colours(annotation_file: Path) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Mean RGB and label of every instance; mean background brightness and instance area."""
    _, images, anns = _load(annotation_file)
    colours, labels, background, areas = [], [], [], []
    for image_id, image in images.items():
        masks = mask_utils.decode([a["segmentation"] for a in anns[image_id]]).astype(bool)
        for k, ann in enumerate(anns[image_id]):
            colours.append(image[masks[..., k]].mean(axis=0) / 255)
            labels.append(ann["category_id"])
            areas.append(ann["area"])
        background.append(image[~masks.any(axis=2)].mean() / 255)
    return (
        np.asarray(colours),
        np.asarray(labels),
        float(np.mean(background)),
        float(np.mean(areas)),
    )


def test_domains_differ_but_class_colours_transfer_partially(synthetic_world):
    src_rgb, src_labels, src_bg, src_area = _instance_colours(synthetic_world["source_train"])
    tgt_rgb, tgt_labels, tgt_bg, tgt_area = _instance_colours(synthetic_world["target_train"])
    assert src_bg - tgt_bg > 0.25  # light, clean source background; dark, blotchy target
    assert 0.8 < tgt_area / src_area < 1.25  # the shift is appearance: the same object sizes
    assert np.abs(src_rgb.mean(axis=0) - tgt_rgb.mean(axis=0)).max() > 0.05  # shifted palette
    # a nearest-centroid colour classifier fit on source: near perfect there, above chance on target
    centroids = np.stack([src_rgb[src_labels == c].mean(axis=0) for c in range(1, 6)])

    def accuracy(rgb: np.ndarray, labels: np.ndarray) -> float:
        distances = ((rgb[:, None] - centroids[None]) ** 2).sum(axis=2)
        return float((distances.argmin(axis=1) + 1 == labels).mean())

    assert accuracy(src_rgb, src_labels) > 0.9
    assert 0.3 < accuracy(tgt_rgb, tgt_labels) < accuracy(src_rgb, src_labels)


def test_existing_world_is_reused_and_another_spec_replaces_it(tmp_path):
    out = tmp_path / "world"
    generate_world(out, WorldSpec(seed=1, counts=SMALL))
    marker = out / "source_train" / "marker"
    marker.write_text("kept only while the world is reused")
    generate_world(out, WorldSpec(seed=1, counts=SMALL))
    assert marker.exists()
    paths = generate_world(out, WorldSpec(seed=1, counts={"target_train": 3}))
    assert not marker.exists() and not (out / "source_train").exists()
    assert len(json.loads(paths["target_train"].read_text())["images"]) == 3
    assert json.loads((out / WORLD_FILE).read_text())["spec"]["counts"] == {"target_train": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world"]


def test_refuses_to_replace_a_folder_that_is_not_a_world(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="world.json"):
        generate_world(tmp_path, WorldSpec(counts=SMALL))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real_render = synthetic.render_scene

    def failing_render(*args):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_render(*args)

    monkeypatch.setattr(synthetic, "render_scene", failing_render)
    with pytest.raises(KeyboardInterrupt):
        generate_world(tmp_path / "world", WorldSpec(counts=SMALL))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"counts": {"train": 3}},
        {"counts": {"source_train": -1}},
        {"image_size": (16, 16)},
        {"seed": -1},
    ],
)
def test_spec_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        WorldSpec(**kwargs)


def test_instances_span_at_least_a_vit_patch(synthetic_world):
    """Most visible instances are at least one 14-px patch of a 112-px image on a side (the
    square root of their area), so a ViT student's patch grid can tell them apart."""
    for split in ("source_train", "target_train"):
        _, _, anns = _load(synthetic_world[split])
        sides = np.sqrt([a["area"] for image in anns.values() for a in image])
        assert np.median(sides) >= 17
        assert np.mean(sides >= 14) > 0.75


def test_broad_styles_lie_between_source_and_target():
    """Each broad image draws every appearance setting from its source value toward its target
    value, at most BROAD_REACH of the way, and the draws differ from image to image."""
    source, target = DOMAIN_STYLES["source"], DOMAIN_STYLES["target"]
    styles = [domain_style(np.random.default_rng(i), "broad") for i in range(50)]
    for name in ("hue_shift", "saturation", "texture_contrast", "stripe_period", "noise_std"):
        values = np.array([getattr(style, name) for style in styles])
        start, end = getattr(source, name), getattr(target, name)
        reach = (values - start) / (end - start)  # 0 at source, 1 at target
        assert ((reach >= 0) & (reach <= BROAD_REACH)).all(), name
        assert reach.std() > 0.1, name
    assert {style.blur_passes for style in styles} == {0, 1}
    assert domain_style(np.random.default_rng(0), "target") == target


def test_a_broad_split_is_generated(tmp_path):
    world = generate_world(tmp_path / "w", WorldSpec(counts={"broad_train": 3}))
    assert len(json.loads(world["broad_train"].read_text())["images"]) == 3
