"""export_onnx: a checked, verified .onnx with castseg metadata, written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import torch
from torch import Tensor, nn

from castseg.data.coco import CategoryMap
from castseg.deploy.onnx_export import export_onnx
from castseg.deploy.onnx_metadata import OnnxMetadata
from castseg.deploy.onnx_runtime import load_onnx_model
from castseg.structures import Predictions

METADATA = OnnxMetadata(
    category_map=CategoryMap(ids=(4, 8), names=("cat", "dog")),
    image_size=(14, 28),
    normalization={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    model_args={"architecture": "colour_segmenter", "num_classes": 2},
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, colour_segmenter) -> tuple[Path, nn.Module]:
    model = colour_segmenter(2)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    report = export_onnx(model, path, METADATA)
    assert report.path == path and report.opset == 18 and report.image_size == (14, 28)
    assert max(report.max_abs_diff.values()) < 1e-5
    return path, model


def test_the_file_passes_the_checker_with_a_dynamic_batch(exported) -> None:
    path, _ = exported
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 18
    (image_input,) = proto.graph.input
    dims = image_input.type.tensor_type.shape.dim
    assert image_input.name == "images"
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 14, 28]
    assert [o.name for o in proto.graph.output] == ["mask_logits", "class_logits"]


def test_the_metadata_alone_describes_the_model(exported) -> None:
    path, _ = exported
    _, metadata = load_onnx_model(path)
    assert metadata == METADATA


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_runtime_matches_pytorch_at_any_batch_size(exported, batch: int) -> None:
    path, model = exported
    segmenter, _ = load_onnx_model(path)
    images = torch.rand(batch, 3, 14, 28, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = model(images)
    actual = segmenter(images)
    assert actual.mask_logits.shape == (batch, 3, 14, 28)
    torch.testing.assert_close(actual.mask_logits, expected.mask_logits, rtol=0, atol=1e-4)
    torch.testing.assert_close(actual.class_logits, expected.class_logits, rtol=0, atol=1e-4)


class ExportDiffers(nn.Module):
    """Adds 1 to its mask logits only while being exported, so ONNX and PyTorch disagree."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Predictions:
        pred = self.model(images)
        shift = 1.0 if torch.compiler.is_exporting() else 0.0
        return Predictions(pred.mask_logits + shift, pred.class_logits)


class ExportFails(nn.Module):
    def forward(self, images: Tensor) -> Predictions:
        raise RuntimeError("this model cannot be traced")


@pytest.mark.parametrize(
    ("wrap", "error", "match"),
    [
        (ExportDiffers, ValueError, r"disagrees with PyTorch: max \|difference\| of mask_logits"),
        (lambda model: ExportFails(), Exception, "cannot be traced"),
    ],
    ids=["disagrees", "fails"],
)
def test_a_failed_export_leaves_the_old_file_alone(
    tmp_path, colour_segmenter, wrap, error, match
) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous export")
    with pytest.raises(error, match=match):
        export_onnx(wrap(colour_segmenter(2)), path, METADATA)
    assert path.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_an_opset_below_18_is_refused_before_exporting(tmp_path, colour_segmenter) -> None:
    with pytest.raises(ValueError, match="opset 17"):
        export_onnx(colour_segmenter(2), tmp_path / "m.onnx", METADATA, opset=17)
    assert not (tmp_path / "m.onnx").exists()
