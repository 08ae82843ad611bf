"""The demo's stand-in encoder: a transformers DINOv2 folder that `student.encoder: PATH` loads.

The folder mirrors the hub's facebook/dinov2-small (config.json with model_type "dinov2" and
architectures ["Dinov2Model"], model.safetensors, a BitImageProcessor preprocessor_config.json
with the ImageNet mean / std and resample 3), at the demo's 112 × 112.
"""

import json

import pytest
import torch
from transformers import AutoImageProcessor, AutoModel, Dinov2Model

from castseg.demo_encoder import (
    SHIPPED_ENCODER,
    folder_fingerprint,
    save_dinov2_folder,
    stand_in_encoder,
)
from castseg.demo_plan import FULL
from castseg.models.student import build_student


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    torch.manual_seed(0)
    student = build_student("tiny", 5)
    folder = save_dinov2_folder(
        student, tmp_path_factory.mktemp("enc") / "dinov2", 112, {"recipe": "test"}
    )
    return student, folder


def test_folder_has_the_hub_layout(encoder_folder):
    _, folder = encoder_folder
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "dinov2"
    assert config["architectures"] == ["Dinov2Model"]
    assert isinstance(AutoModel.from_pretrained(folder), Dinov2Model)
    processor = AutoImageProcessor.from_pretrained(folder)
    assert processor.crop_size == {"height": 112, "width": 112}
    assert list(processor.image_mean) == [0.485, 0.456, 0.406]
    assert folder_fingerprint(folder) == {"recipe": "test"}


def test_student_encoder_path_loads_the_same_weights(encoder_folder):
    student, folder = encoder_folder
    loaded = build_student("tiny", 3, encoder=str(folder))
    images = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        expected, _ = student.eval().encoder(images)
        got, _ = loaded.eval().encoder(images)
    for a, b in zip(expected, got, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_shipped_encoder_matches_the_full_demo():
    assert folder_fingerprint(SHIPPED_ENCODER) == FULL.encoder.fingerprint(FULL.world)
    config = json.loads((SHIPPED_ENCODER / "config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"]) == (96, 4)


def test_a_missing_or_foreign_folder_has_no_fingerprint(tmp_path):
    assert folder_fingerprint(tmp_path / "absent") is None
    (tmp_path / "castseg_fingerprint.json").write_text("not json")
    assert folder_fingerprint(tmp_path) is None


def test_a_stale_cache_is_pretrained_again(tmp_path, synthetic_world, encoder_folder, capsys):
    from castseg.demo_plan import SMOKE, demo_config

    _, stale = encoder_folder
    cache = tmp_path / "demo_encoder"
    cache.mkdir()
    for item in stale.iterdir():
        (cache / item.name).write_bytes(item.read_bytes())
    world = {"source_train": synthetic_world["source_train"]}
    cfg = demo_config(tmp_path, synthetic_world, SMOKE, ["data.image_size=[56,56]"])
    path = stand_in_encoder(SMOKE.encoder, SMOKE.world, world, cfg, tmp_path, progress=False)
    assert path == cache
    assert "Pretraining the stand-in encoder" in capsys.readouterr().out
    assert folder_fingerprint(cache) == SMOKE.encoder.fingerprint(SMOKE.world)
    assert stand_in_encoder(SMOKE.encoder, SMOKE.world, world, cfg, tmp_path) == cache
    assert "cached in" in capsys.readouterr().out
