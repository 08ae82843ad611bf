"""`castseg export CKPT --onnx FILE` of a tiny student, checked in ONNX Runtime against PyTorch,
then used by `castseg predict --onnx FILE` with nothing else.

Tolerance: ONNX Runtime and PyTorch (float32, CPU) agree within atol 1e-4 on every logit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from castseg.cli import main
from castseg.data.coco import CategoryMap
from castseg.deploy.onnx_runtime import load_onnx_model
from castseg.models.checkpoints import load_checkpoint, save_checkpoint
from castseg.models.student import build_student

CATEGORIES = CategoryMap(ids=(3, 7, 9), names=("cat", "dog", "bird"))
ATOL = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(checkpoint, .onnx, what export printed) of a tiny student at 56 × 84."""
    folder = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    checkpoint = save_checkpoint(
        folder / "student.pt",
        build_student("tiny", 3),
        category_map=CATEGORIES,
        image_size=(56, 84),
    )
    onnx_path = folder / "student.onnx"
    with pytest.MonkeyPatch.context() as patch:
        printed = []
        patch.setattr("builtins.print", lambda *args, **_: printed.append(" ".join(map(str, args))))
        assert main(["export", str(checkpoint), "--onnx", str(onnx_path)]) == 0
    return checkpoint, onnx_path, "\n".join(printed)


def test_export_writes_a_checked_model_with_a_dynamic_batch(exported) -> None:
    _, onnx_path, printed = exported
    proto = onnx.load(onnx_path)
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 56, 84]
    assert "opset 18, input [B, 3, 56, 84]" in printed
    assert "max |difference|" in printed
    assert [p.name for p in onnx_path.parent.iterdir() if p.name.startswith(".")] == []


def test_the_onnx_metadata_carries_classes_size_and_normalisation(exported) -> None:
    checkpoint, onnx_path, _ = exported
    _, metadata = load_onnx_model(onnx_path)
    loaded = load_checkpoint(checkpoint)
    assert metadata.category_map == CATEGORIES
    assert metadata.image_size == (56, 84)
    assert metadata.normalization == loaded.normalization
    assert metadata.model_args["size"] == "tiny"


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_runtime_matches_pytorch(exported, batch: int) -> None:
    checkpoint, onnx_path, _ = exported
    model = load_checkpoint(checkpoint).model
    segmenter, _ = load_onnx_model(onnx_path)
    images = torch.rand(batch, 3, 56, 84, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = model(images)
    actual = segmenter(images)
    torch.testing.assert_close(actual.mask_logits, expected.mask_logits, rtol=0, atol=ATOL)
    torch.testing.assert_close(actual.class_logits, expected.class_logits, rtol=0, atol=ATOL)


def test_predict_with_the_onnx_file_alone_matches_the_checkpoint(exported, tmp_path) -> None:
    checkpoint, onnx_path, _ = exported
    rng = np.random.default_rng(1)
    for name, size in [("a.png", (40, 60)), ("b.png", (84, 56)), ("c.png", (56, 84))]:
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(tmp_path / name)
    common = [str(tmp_path / "*.png"), "--score-threshold", "0", "--batch-size", "2"]
    common += ["--no-progress"]
    assert main(["predict", str(checkpoint), *common, "--out", str(tmp_path / "torch")]) == 0
    assert main(["predict", *common, "--onnx", str(onnx_path), "--out", str(tmp_path / "ort")]) == 0
    # The exported file in the checkpoint's place is recognised by its content.
    assert main(["predict", str(onnx_path), *common, "--out", str(tmp_path / "as_ckpt")]) == 0
    assert (tmp_path / "as_ckpt" / "results.json").read_text() == (
        tmp_path / "ort" / "results.json"
    ).read_text()

    runs = {}
    for name in ("torch", "ort"):
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())
        index = json.loads((tmp_path / name / "images.json").read_text())
        assert [Path(r["file_name"]).name for r in index["images"]] == ["a.png", "b.png", "c.png"]
    assert len(runs["torch"]) > 0
    assert [(r["image_id"], r["category_id"]) for r in runs["ort"]] == [
        (r["image_id"], r["category_id"]) for r in runs["torch"]
    ]
    np.testing.assert_allclose(
        [r["score"] for r in runs["ort"]], [r["score"] for r in runs["torch"]], atol=ATOL
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--opset", "17"], "opset 17 is not supported"),
        (["--height", "56"], "both --height and --width"),
    ],
)
def test_bad_options_write_nothing(exported, tmp_path, capsys, extra, message) -> None:
    checkpoint, _, _ = exported
    target = tmp_path / "m.onnx"
    assert main(["export", str(checkpoint), "--onnx", str(target), *extra]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_missing_checkpoint_is_named(tmp_path, capsys) -> None:
    assert main(["export", str(tmp_path / "gone.pt"), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "gone.pt" in capsys.readouterr().err


def test_eval_scores_the_onnx_file_as_it_scores_the_checkpoint(exported, tmp_path, capsys) -> None:
    # Ground truth = the checkpoint's own best instance per image, so its AP is high and an ONNX
    # path that predicted anything else (another size, normalisation, class order) would drop.
    checkpoint, onnx_path, _ = exported
    rng = np.random.default_rng(2)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (56, 84, 3), dtype=np.uint8)).save(tmp_path / name)
    predicted = tmp_path / "predicted"
    argv = [str(checkpoint), str(tmp_path / "*.png"), "--score-threshold", "0", "--no-progress"]
    assert main(["predict", *argv, "--out", str(predicted)]) == 0
    results = json.loads((predicted / "results.json").read_text())
    images = json.loads((predicted / "images.json").read_text())["images"]
    annotations = []
    for image in images:
        best = max((r for r in results if r["image_id"] == image["id"]), key=lambda r: r["score"])
        rle = {**best["segmentation"], "counts": best["segmentation"]["counts"].encode()}
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": image["id"],
                "category_id": best["category_id"],
                "segmentation": best["segmentation"],
                "area": float(mask_utils.area(rle)),
                "bbox": mask_utils.toBbox(rle).tolist(),
                "iscrowd": 0,
            }
        )
    gt = tmp_path / "gt.json"
    pairs = zip(CATEGORIES.ids, CATEGORIES.names, strict=True)
    categories = [{"id": i, "name": n} for i, n in pairs]
    gt_images = [{k: image[k] for k in ("id", "height", "width")} for image in images]
    for record, image in zip(gt_images, images, strict=True):
        record["file_name"] = Path(image["file_name"]).name
    gt.write_text(
        json.dumps({"images": gt_images, "annotations": annotations, "categories": categories})
    )
    capsys.readouterr()
    common = ["--annotations", str(gt), "--data", str(tmp_path), "--no-progress"]
    tables = {}
    for name, source in (("torch", [str(checkpoint)]), ("onnx", ["--onnx", str(onnx_path)])):
        assert main(["eval", *source, *common]) == 0
        tables[name] = capsys.readouterr().out
    # The ONNX file given as a plain model argument is recognised by its content.
    assert main(["eval", str(onnx_path), *common]) == 0
    assert capsys.readouterr().out == tables["onnx"] == tables["torch"]
    assert float(tables["onnx"].splitlines()[0].split()[1]) > 50


def test_a_model_file_of_neither_format_is_one_line(tmp_path, capsys) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"\x00\x01 not a model")
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    for command, source in (
        ("eval", [str(bogus), "--annotations", str(gt)]),
        ("eval", ["--onnx", str(bogus), "--annotations", str(gt)]),
        ("predict", [str(bogus), str(gt), "--out", str(tmp_path / "out")]),
    ):
        assert main([command, *source]) == 2
        error = capsys.readouterr().err
        assert error == (
            f"castseg {command}: error: {bogus} is neither a castseg checkpoint (`castseg run` "
            ".pt) nor an ONNX model (`castseg export` .onnx)\n"
        )


def test_an_onnx_path_inside_a_regular_file_is_one_line(exported, tmp_path, capsys) -> None:
    checkpoint, _, _ = exported
    some_file = tmp_path / "some_file"
    some_file.write_text("")
    assert main(["export", str(checkpoint), "--onnx", str(some_file / "s.onnx")]) == 2
    error = capsys.readouterr().err
    assert error == (f"castseg export: error: --onnx {some_file} is a file; expected a folder\n")


def test_export_reports_the_check_before_the_file_it_wrote(exported) -> None:
    _, _, printed = exported
    lines = printed.splitlines()
    check = next(i for i, line in enumerate(lines) if "max |difference|" in line)
    wrote = next(i for i, line in enumerate(lines) if line.startswith("wrote "))
    assert check < wrote
