"""predict_files on images of coloured rectangles, whose instances a ColourSegmenter knows.

Channel c of an image is query c's mask and query c predicts class c, so every rectangle must
come back as one instance of its colour's category, at its place in the original image; the
ONNX Runtime backend must give the same records as PyTorch.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from castseg.data.coco import CategoryMap
from castseg.deploy.onnx_export import export_onnx
from castseg.deploy.onnx_metadata import OnnxMetadata
from castseg.deploy.predictor import (
    DeployedModel,
    load_deployed_model,
    overlay_names,
    predict_files,
)

CATEGORIES = CategoryMap(ids=(3, 7, 9), names=("cat", "dog", "bird"))
VIEW = (56, 84)
# file name -> (height, width), rectangles (channel, top, bottom, left, right)
SCENES = {
    "scene.png": ((56, 84), [(0, 4, 20, 6, 30), (1, 30, 50, 10, 40), (2, 8, 24, 50, 80)]),
    "other/scene.png": ((28, 42), [(1, 4, 20, 10, 30)]),
    "tall.png": ((70, 35), [(2, 10, 60, 5, 30)]),
}


def rectangle_mask(height: int, width: int, top: int, bottom: int, left: int, right: int):
    mask = np.zeros((height, width), dtype=bool)
    mask[top:bottom, left:right] = True
    return mask


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    """The scenes as PNG files, with an unreadable broken.png second."""
    paths = []
    for name, ((height, width), rectangles) in SCENES.items():
        pixels = np.zeros((height, width, 3), dtype=np.uint8)
        for channel, top, bottom, left, right in rectangles:
            pixels[top:bottom, left:right, channel] = 255
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        paths.append(path)
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"\x89PNG but not really")
    return [paths[0], broken, *paths[1:]]


@pytest.fixture
def torch_model(colour_segmenter, tmp_path: Path) -> DeployedModel:
    return DeployedModel(colour_segmenter(3), CATEGORIES, VIEW, "pytorch", tmp_path / "m.pt")


def read_outputs(out: Path) -> tuple[list[dict], dict]:
    return json.loads((out / "results.json").read_text()), json.loads(
        (out / "images.json").read_text()
    )


def test_every_rectangle_comes_back_as_one_instance_of_its_category(
    torch_model: DeployedModel, images: list[Path], tmp_path: Path, caplog
) -> None:
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        summary = predict_files(torch_model, images, out, batch_size=2, progress=False)
    results, index = read_outputs(out)

    assert [(r["id"], r["file_name"]) for r in index["images"]] == [
        (1, str(images[0])),
        (3, str(images[2])),
        (4, str(images[3])),
    ]
    assert [(r["height"], r["width"]) for r in index["images"]] == [s[0] for s in SCENES.values()]
    assert index["categories"] == [
        {"id": 3, "name": "cat"},
        {"id": 7, "name": "dog"},
        {"id": 9, "name": "bird"},
    ]
    assert [(s["id"], s["file_name"]) for s in index["skipped"]] == [(2, str(images[1]))]
    assert "broken.png" in caplog.text
    assert summary.num_instances == len(results) == 5

    for record, (image_id, ((height, width), rectangles)) in zip(
        index["images"], zip((1, 3, 4), SCENES.values(), strict=True), strict=True
    ):
        found = [r for r in results if r["image_id"] == image_id]
        assert sorted(r["category_id"] for r in found) == sorted(
            CATEGORIES.ids[c] for c, *_ in rectangles
        )
        for channel, *box in rectangles:
            (match,) = [r for r in found if r["category_id"] == CATEGORIES.ids[channel]]
            assert match["score"] > 0.99
            mask = mask_utils.decode(match["segmentation"]).astype(bool)
            expected = rectangle_mask(height, width, *box)
            iou = (mask & expected).sum() / (mask | expected).sum()
            assert iou > (0.999 if (height, width) == VIEW else 0.85)
        overlay = np.asarray(Image.open(out / record["overlay"]))
        assert overlay.shape == (height, width, 3)
        channel, top, bottom, left, right = rectangles[0]
        original = np.zeros(3, dtype=np.uint8)
        original[channel] = 255
        inside = overlay[(top + bottom) // 2, (left + right) // 2]
        assert not np.array_equal(inside, original)  # the instance colour is blended in
        assert np.array_equal(overlay[-1, -1], [0, 0, 0])  # the background is untouched


def test_batch_size_and_the_onnx_backend_change_nothing(
    torch_model: DeployedModel, images: list[Path], tmp_path: Path, colour_segmenter
) -> None:
    predict_files(torch_model, images, tmp_path / "b1", batch_size=1, progress=False)
    predict_files(torch_model, images, tmp_path / "b3", batch_size=3, progress=False)
    onnx_path = tmp_path / "model.onnx"
    export_onnx(
        colour_segmenter(3),
        onnx_path,
        OnnxMetadata(CATEGORIES, VIEW, {"mean": [0, 0, 0], "std": [1, 1, 1]}, {}),
    )
    onnx_model = load_deployed_model(onnx=onnx_path)
    assert (onnx_model.backend, onnx_model.image_size) == ("onnxruntime", VIEW)
    predict_files(onnx_model, images, tmp_path / "onnx", batch_size=2, progress=False)

    reference, reference_index = read_outputs(tmp_path / "b1")
    for run in ("b3", "onnx"):
        results, index = read_outputs(tmp_path / run)
        assert index["images"] == reference_index["images"]
        assert [(r["image_id"], r["category_id"], r["segmentation"]) for r in results] == [
            (r["image_id"], r["category_id"], r["segmentation"]) for r in reference
        ]
        np.testing.assert_allclose(
            [r["score"] for r in results], [r["score"] for r in reference], atol=1e-5
        )


def test_the_score_threshold_drops_instances(
    torch_model: DeployedModel, images: list[Path], tmp_path: Path
) -> None:
    predict_files(torch_model, images, tmp_path / "all", score_threshold=0.0, progress=False)
    everything, _ = read_outputs(tmp_path / "all")
    assert len(everything) > 5  # unlikely (query, class) pairs too, with tiny scores
    assert min(r["score"] for r in everything) < 0.01


def test_no_readable_image_is_an_error_and_writes_no_results(
    torch_model: DeployedModel, images: list[Path], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="none of the 1 input images could be read.*broken.png"):
        predict_files(torch_model, [images[1]], tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "results.json").exists()


def test_overlay_names_disambiguate_shared_stems() -> None:
    paths = [Path("a/x.png"), Path("b/x.jpg"), Path("y.png"), Path("c/X.png")]
    assert overlay_names(paths) == ["x-1.png", "x-2.png", "y.png", "X-4.png"]


def test_exactly_one_model_source_is_needed() -> None:
    with pytest.raises(ValueError, match="either a checkpoint or an ONNX model"):
        load_deployed_model()
    with pytest.raises(ValueError, match="either a checkpoint or an ONNX model"):
        load_deployed_model(checkpoint="m.pt", onnx="m.onnx")
