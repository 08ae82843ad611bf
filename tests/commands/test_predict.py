"""`castseg predict CKPT INPUT... --out DIR` with a tiny random student checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from castseg.cli import main
from castseg.data.coco import CategoryMap
from castseg.data.images import load_rgb_image
from castseg.data.views import ResizeView
from castseg.evaluation.coco import encode_results
from castseg.models.checkpoints import load_checkpoint, save_checkpoint
from castseg.models.student import build_student
from castseg.runtime.inference import predict_images

CATEGORIES = CategoryMap(ids=(3, 7, 9), names=("cat", "dog", "bird"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "student.pt"
    return save_checkpoint(
        path, build_student("tiny", 3), category_map=CATEGORIES, image_size=(56, 84)
    )


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """photos/a.png (40 × 60), photos/b.jpg (70 × 50) and photos/more/c.png (30 × 30)."""
    rng = np.random.default_rng(0)
    for name, size in [("a.png", (40, 60)), ("b.jpg", (70, 50)), ("more/c.png", (30, 30))]:
        path = tmp_path / "photos" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return tmp_path / "photos"


def test_predict_writes_the_results_of_the_model_for_every_image(
    checkpoint: Path, photos: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    argv = ["predict", str(checkpoint), str(photos), f"{photos}/**/c.png", "--out", str(out)]
    argv += ["--score-threshold", "0", "--top-k", "3", "--batch-size", "2", "--no-progress"]
    assert main(argv) == 0
    assert "3 images" in capsys.readouterr().out

    index = json.loads((out / "images.json").read_text())
    results = json.loads((out / "results.json").read_text())
    names = [Path(r["file_name"]).name for r in index["images"]]
    assert names == ["a.png", "b.jpg", "c.png"] and [r["id"] for r in index["images"]] == [1, 2, 3]

    # The same model through the evaluation code path, image by image.
    loaded = load_checkpoint(checkpoint)
    expected = []
    for record in index["images"]:
        image = load_rgb_image(Path(record["file_name"]))
        assert (record["height"], record["width"]) == tuple(image.shape[1:])
        (found,) = predict_images(loaded.model, [image], ResizeView((56, 84)), top_k=3)
        expected += encode_results(
            record["id"], found["masks"], found["labels"], found["scores"], CATEGORIES.to_coco
        )
        overlay = Image.open(out / record["overlay"])
        assert overlay.size == (record["width"], record["height"])
    assert [(r["image_id"], r["category_id"], r["segmentation"]) for r in results] == [
        (r["image_id"], r["category_id"], r["segmentation"]) for r in expected
    ]
    np.testing.assert_allclose(
        [r["score"] for r in results], [r["score"] for r in expected], atol=1e-6
    )
    for record in results:
        assert mask_utils.decode(record["segmentation"]).shape == tuple(
            record["segmentation"]["size"]
        )


def test_the_score_threshold_keeps_only_confident_instances(
    checkpoint: Path, photos: Path, tmp_path: Path
) -> None:
    runs = {}
    for threshold in ("0", "0.2"):
        out = tmp_path / threshold
        argv = ["predict", str(checkpoint), str(photos), "--out", str(out), "--no-progress"]
        assert main([*argv, "--score-threshold", threshold]) == 0
        runs[threshold] = json.loads((out / "results.json").read_text())
    kept = [r for r in runs["0"] if r["score"] >= 0.2]
    assert [r["score"] for r in runs["0.2"]] == pytest.approx([r["score"] for r in kept])
    assert len(runs["0"]) > len(kept)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{ckpt}", "{photos}/missing.png"], "missing.png"),
        (["{ckpt}"], "at least one image"),
        (["{ckpt}", "{photos}", "--onnx", "model.onnx"], "not a checkpoint"),
        (["{photos}", "--onnx", "{photos}/nothing.onnx"], "nothing.onnx"),
        (["{tmp}/nothing.pt", "{photos}"], "nothing.pt"),
        (["{ckpt}", "{photos}", "--batch-size", "0"], "--batch-size"),
    ],
    ids=["missing-image", "no-images", "ckpt-with-onnx", "missing-onnx", "missing-ckpt", "batch"],
)
def test_bad_command_lines_are_errors_that_say_why(
    checkpoint: Path, photos: Path, tmp_path: Path, capsys, argv: list[str], message: str
) -> None:
    values = {"ckpt": checkpoint, "photos": photos, "tmp": tmp_path}
    argv = [item.format(**values) for item in argv]
    assert main(["predict", *argv, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_an_error(checkpoint: Path, photos: Path, tmp_path: Path, capsys):
    argv = ["predict", str(checkpoint), str(photos), "--out", str(tmp_path), "--device", "cuda"]
    assert main(argv) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_an_out_folder_that_is_a_file_is_one_line(checkpoint: Path, photos: Path, tmp_path, capsys):
    some_file = tmp_path / "some_file"
    some_file.write_text("")
    argv = ["predict", str(checkpoint), str(photos), "--out", str(some_file), "--no-progress"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"castseg predict: error: --out {some_file} is a file; expected a folder\n"
    )
    assert some_file.read_text() == ""
