"""The shipped stand-in teacher matches the full demo, and half-precision copies load back."""

import torch

from castseg.data.coco import CategoryMap
from castseg.demo_plan import FULL
from castseg.demo_teacher import SHIPPED_TEACHER, TeacherRecipe, write_half_precision
from castseg.models.checkpoints import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from castseg.models.student import build_student


def test_shipped_teacher_matches_the_full_demo():
    loaded = load_checkpoint(SHIPPED_TEACHER)
    assert loaded.extra["fingerprint"] == FULL.teacher.fingerprint(FULL.world)
    assert loaded.model.config_dict()["size"] == FULL.teacher.size
    assert loaded.category_map.names == ("disc", "box", "triangle", "ring", "cross")


def test_shipped_teacher_keeps_dinov2_in_its_published_layout():
    # The layout of facebook/dinov2-small's weights, which every transformers version converts
    # to its own module names; a file of one version's module names fails on another.
    payload = torch.load(SHIPPED_TEACHER, weights_only=True)
    assert payload["format"] == CHECKPOINT_FORMAT
    dinov2 = payload["hub_models"]["encoder.backbone"]
    assert "encoder.layer.0.attention.attention.query.weight" in dinov2
    assert all(weights.dtype == torch.float16 for weights in dinov2.values())


def test_fingerprint_changes_with_recipe_and_world():
    base = TeacherRecipe().fingerprint(FULL.world)
    assert TeacherRecipe(steps=10).fingerprint(FULL.world) != base
    other_world = FULL.world.__class__(seed=1, counts=dict(FULL.counts))
    assert TeacherRecipe().fingerprint(other_world) != base


def test_half_precision_copy_loads_into_a_float_model(tmp_path):
    torch.manual_seed(0)
    model = build_student("tiny", 2).eval()
    categories = CategoryMap(ids=(1, 2), names=("a", "b"))
    full = save_checkpoint(
        tmp_path / "full.pt", model, category_map=categories, image_size=(56, 56)
    )
    half = write_half_precision(full, tmp_path / "half.pt")
    assert half.stat().st_size < 0.6 * full.stat().st_size
    restored = load_checkpoint(half).model
    assert next(restored.parameters()).dtype == torch.float32
    images = torch.rand(1, 3, 56, 56)
    with torch.no_grad():
        assert torch.allclose(model(images).mask_logits, restored(images).mask_logits, atol=5e-2)
