"""A pretrained DINOv2 folder whose weights do not all fit is refused, naming folder and keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import Dinov2Config, Dinov2Model

from castseg.models.pretrained import WeightsMismatchError
from castseg.models.student import build_student


@pytest.fixture(scope="module")
def dinov2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random DINOv2 laid out like facebook/dinov2-small on the hub: config.json of a
    `Dinov2Model` (model_type "dinov2"), model.safetensors and the BitImageProcessor's
    preprocessor_config.json of that repository."""
    torch.manual_seed(0)
    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64
    )
    path = tmp_path_factory.mktemp("dinov2_small_layout")
    Dinov2Model(config).save_pretrained(path)
    processor = {
        "crop_size": {"height": 224, "width": 224},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_processor_type": "BitImageProcessor",
        "image_std": [0.229, 0.224, 0.225],
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"shortest_edge": 256},
    }
    (path / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    return path


def test_the_hub_layout_folder_loads(dinov2_dir: Path) -> None:
    published = json.loads((dinov2_dir / "config.json").read_text())
    assert published["model_type"] == "dinov2"
    assert published["architectures"] == ["Dinov2Model"]
    assert build_student("tiny", 2, encoder=str(dinov2_dir)).encoder.hidden_size == 32


@pytest.mark.parametrize(
    ("edit", "reported"),
    [
        ({"drop": ("encoder.layer.1.mlp.fc1.weight",)}, r"missing 1 key \(encoder\.layer\.1\.mlp"),
        ({"add": {"head.weight": torch.zeros(3, 32)}}, r"unexpected 1 key \(head\.weight\)"),
        ({"grow": ("layernorm.weight",)}, r"1 of another shape, e\.g\. layernorm\.weight: \(33,\)"),
    ],
    ids=["missing", "unexpected", "misshaped"],
)
def test_weights_that_do_not_fit_are_refused(dinov2_dir, edited_weights, edit, reported) -> None:
    folder = edited_weights(dinov2_dir, **edit)
    with pytest.raises(WeightsMismatchError, match=reported) as caught:
        build_student("tiny", 2, encoder=str(folder))
    assert f"the encoder '{folder}'" in str(caught.value)
    assert isinstance(caught.value, ValueError)  # the CLI's one-line error, exit code 2
