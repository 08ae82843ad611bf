"""The template for your own data (castseg/configs/custom_coco.yaml), copied and pointed at a
small COCO set, starts its student from the published DINOv2-S encoder, not from random weights.

`facebook/dinov2-small` is a tiny random DINOv2 here, laid out as the hub repository sits in the
Hugging Face cache (models--facebook--dinov2-small/snapshots/<commit>/config.json and
model.safetensors, refs/main naming the commit), read offline: nothing is downloaded.
"""

from __future__ import annotations

import shutil

import huggingface_hub.constants
import pytest
import torch
from transformers import Dinov2Config, Dinov2Model

from castseg.cli import main
from castseg.config import builtin_config, load_config
from castseg.data.coco import CategoryMap
from castseg.models.checkpoints import load_checkpoint, save_checkpoint
from castseg.models.sizes import SIZES
from castseg.models.student import build_student

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def published_encoder(tmp_path, monkeypatch) -> dict[str, torch.Tensor]:
    """The weights of the stand-in for the paper size's published encoder, in an offline cache."""
    repo = tmp_path / "hub" / f"models--{SIZES['paper'].pretrained_encoder.replace('/', '--')}"
    torch.manual_seed(3)
    model = Dinov2Model(
        Dinov2Config(
            hidden_size=48, num_hidden_layers=4, num_attention_heads=2, intermediate_size=96
        )
    )
    model.save_pretrained(repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return model.state_dict()


def test_a_copy_of_the_template_starts_from_the_published_encoder(
    published_encoder, synthetic_world, tmp_path, fast_args, capsys
):
    config = tmp_path / "my_experiment.yaml"
    shutil.copy(builtin_config("custom_coco"), config)
    assert load_config(config).student.encoder == "auto"  # the template leaves it to the size
    categories = CategoryMap.from_coco(synthetic_world["target_train"])
    teacher = save_checkpoint(
        tmp_path / "teacher.pt",
        build_student("tiny", len(categories)),
        category_map=categories,
        image_size=(56, 56),
    )
    train, val = synthetic_world["target_train"], synthetic_world["target_val"]
    args = [
        "--no-progress",
        "--set", f"data.labeled_annotations={train}",
        "--set", f"data.image_root={train.parent / 'images'}",
        "--set", f"data.unlabeled={train.parent / 'images'}",
        "--set", f"data.val_annotations={val}",
        "--set", f"data.val_image_root={val.parent / 'images'}",
        "--set", "data.image_size=[56,56]",
        "--set", "data.num_workers=0",
        # a castseg teacher on disk, where the template's is MM-Grounding-DINO + SAM2 by hub id
        "--set", "teacher.kind=student_family",
        "--set", f"teacher.checkpoint={teacher}",
        "--set", f"run.out_dir={tmp_path / 'run'}",
        "--set", "run.stage_store=null",
        "--set", "run.accelerator=cpu",
        *fast_args,
        # no student step: student.pt holds the weights the student started from
        "--set", "student.distill_iters=0",
        "--set", "student.refine_iters=0",
    ]  # fmt: skip
    assert main(["check", str(config), *args]) == 0
    assert "student: paper, pretrained encoder facebook/dinov2-small (loads)" in (
        capsys.readouterr().out
    )
    assert main(["run", str(config), *args]) == 0
    encoder = load_checkpoint(tmp_path / "run" / "student.pt").model.encoder.backbone.state_dict()
    for name, tensor in published_encoder.items():
        torch.testing.assert_close(encoder[name], tensor, rtol=0, atol=0, msg=name)
