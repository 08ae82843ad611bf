"""Overlays colour exactly the drawn masks; grids are valid PNGs written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from castseg.viz import instance_colour, overlay_instances, save_prediction_grid

CLASSES = ["disc", "box"]


def _square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def _grey(size: int) -> torch.Tensor:
    return torch.full((3, size, size), 0.5)


def test_fill_blends_instance_colour_inside_mask_and_leaves_the_rest() -> None:
    mask = _square(32, 8, 8, 12)
    alpha = 0.4
    out = overlay_instances(
        _grey(32), mask[None], [1], None, CLASSES, alpha=alpha, outline=False, show_labels=False
    )
    colour = np.array(instance_colour(0), dtype=np.float64)
    expected_fill = np.rint((1 - alpha) * 128.0 + alpha * colour)  # 0.5 → 128 in uint8

    assert out.dtype == np.uint8 and out.shape == (32, 32, 3)
    assert np.array_equal(out[mask], np.broadcast_to(expected_fill, (mask.sum(), 3)))
    assert np.all(out[~mask] == 128)


def test_outline_is_the_inner_border_in_full_colour() -> None:
    mask = _square(32, 8, 8, 12)
    out = overlay_instances(_grey(32), mask[None], [0], None, CLASSES, alpha=0.0, show_labels=False)
    border = mask.copy()
    border[9:19, 9:19] = False  # one-pixel ring inside the square

    assert np.all(out[border] == instance_colour(0))
    assert np.all(out[~border] == 128)  # alpha 0: the interior keeps the image


def test_alpha_zero_without_outline_or_labels_leaves_image_unchanged() -> None:
    image = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    masks = np.stack([_square(24, 2, 2, 10), _square(24, 10, 12, 8)])
    out = overlay_instances(
        image, masks, [0, 1], [0.9, 0.8], CLASSES, alpha=0.0, outline=False, show_labels=False
    )
    assert np.array_equal(out, image)


def test_score_threshold_hides_low_scoring_instances() -> None:
    masks = np.stack([_square(48, 4, 4, 10), _square(48, 30, 30, 10)])
    out = overlay_instances(
        _grey(48), masks, [0, 1], [0.9, 0.2], CLASSES, score_threshold=0.5, show_labels=False
    )
    assert np.all(out[masks[0]] != 128, axis=-1).all()
    assert np.all(out[masks[1]] == 128)


def test_labels_draw_outside_the_mask() -> None:
    mask = _square(96, 60, 20, 20)
    plain = overlay_instances(_grey(96), mask[None], [0], [0.87], CLASSES, show_labels=False)
    labelled = overlay_instances(_grey(96), mask[None], [0], [0.87], CLASSES)
    changed = np.any(labelled != plain, axis=-1)
    assert changed[:60].any()  # the label box sits just above the mask
    assert not changed[80:].any()


def test_label_outside_class_names_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"labels \[2\]"):
        overlay_instances(_grey(16), _square(16, 0, 0, 4)[None], [2], None, CLASSES)


def test_mask_size_must_match_image() -> None:
    with pytest.raises(ValueError, match="masks must be"):
        overlay_instances(_grey(16), np.zeros((1, 8, 8), dtype=bool), [0], None, CLASSES)


def test_prediction_grid_is_a_png_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    masks = torch.from_numpy(np.stack([_square(40, 5, 5, 12), _square(40, 20, 20, 15)]))
    gt = {"masks": masks, "labels": torch.tensor([0, 1])}
    pred = {"masks": masks, "labels": torch.tensor([0, 1]), "scores": torch.tensor([0.9, 0.3])}
    path = save_prediction_grid(
        tmp_path / "grid.png", [(_grey(40), gt, pred), (_grey(40), gt, pred)], CLASSES, title="t"
    )
    with Image.open(path) as png:
        png.verify()
        assert png.format == "PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_failed_grid_leaves_no_file(tmp_path: Path) -> None:
    gt = {"masks": np.zeros((0, 8, 8), dtype=bool), "labels": []}
    with pytest.raises(ValueError, match=r"row 0: pred dict is missing \['masks'\]"):
        save_prediction_grid(tmp_path / "grid.png", [(_grey(8), gt, {"labels": []})], CLASSES)
    assert list(tmp_path.iterdir()) == []


def test_labels_never_bury_a_small_image() -> None:
    # Four instances crowding the top-left corner of a 96 × 96 image, and one small image whose
    # label could not fit: the labels drawn cover little of what lies outside the masks.
    masks = np.stack([_square(96, 20 + 2 * i, 20 + 2 * i, 30) for i in range(4)])
    scores = [0.9, 0.8, 0.7, 0.6]
    plain = overlay_instances(_grey(96), masks, [0, 1, 0, 1], scores, CLASSES, show_labels=False)
    labelled = overlay_instances(_grey(96), masks, [0, 1, 0, 1], scores, CLASSES)
    outside = ~masks.any(axis=0)
    changed = np.any(labelled != plain, axis=-1) & outside
    assert 0 < changed.sum() <= 0.05 * outside.sum()
    tiny = overlay_instances(_grey(24), _square(24, 4, 4, 8)[None], [0], [0.9], CLASSES)
    bare = overlay_instances(
        _grey(24), _square(24, 4, 4, 8)[None], [0], [0.9], CLASSES, show_labels=False
    )
    assert np.array_equal(tiny, bare)
