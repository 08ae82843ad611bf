"""The student end to end: shapes, embeddings, gradients, loading, sizes, determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Dinov2Config, Dinov2Model

from castseg.models.sizes import SIZES
from castseg.models.student import Student, build_student
from castseg.structures import Predictions

NUM_CLASSES = 5


@pytest.fixture(scope="module")
def tiny() -> Student:
    torch.manual_seed(0)
    return build_student("tiny", NUM_CLASSES)


def _loss(pred: Predictions) -> torch.Tensor:
    """A scalar that depends on every output, auxiliary layers included."""
    total = pred.embeddings.sum()
    for layer in pred.layers():
        total = total + layer.mask_logits.sigmoid().mean() + layer.class_logits.logsumexp(-1).mean()
    return total


def test_tiny_output_shapes(tiny: Student) -> None:
    pred = tiny(torch.rand(2, 3, 112, 140))
    k, grid = SIZES["tiny"].num_queries, (8, 10)
    assert pred.mask_logits.shape == (2, k, 4 * grid[0], 4 * grid[1])
    assert pred.class_logits.shape == (2, k, NUM_CLASSES + 1)
    assert pred.embeddings.shape == (2, 128, *grid)
    assert len(pred.aux) == SIZES["tiny"].decoder_layers
    for layer in pred.aux:
        assert layer.mask_logits.shape == pred.mask_logits.shape
        assert layer.class_logits.shape == pred.class_logits.shape
        assert not torch.equal(layer.mask_logits, pred.mask_logits)


def test_num_queries_and_proj_dim_override() -> None:
    student = build_student("tiny", 2, num_queries=7, proj_dim=16)
    pred = student(torch.rand(1, 3, 56, 84))
    assert pred.mask_logits.shape == (1, 7, 16, 24)
    assert pred.embeddings.shape == (1, 16, 4, 6)


def test_embeddings_have_unit_norm(tiny: Student) -> None:
    pred = tiny(torch.rand(2, 3, 112, 112))
    norms = pred.embeddings.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_gradients_reach_every_part(tiny: Student) -> None:
    tiny.zero_grad()
    _loss(tiny(torch.rand(2, 3, 112, 112))).backward()
    # DINOv2's mask token only serves masked-image modelling, which the student never runs
    missing = [
        name
        for name, p in tiny.named_parameters()
        if "mask_token" not in name and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert missing == []
    tiny.zero_grad()


def test_input_not_multiple_of_patch_size_raises(tiny: Student) -> None:
    with pytest.raises(ValueError, match="112x120"):
        tiny(torch.rand(1, 3, 112, 120))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        tiny(torch.rand(1, 1, 112, 112))


def test_parameter_groups_partition_the_model(tiny: Student) -> None:
    groups = tiny.parameter_groups()
    encoder_ids = {id(p) for p in groups["encoder"]}
    decoder_ids = {id(p) for p in groups["decoder"]}
    assert encoder_ids == {id(p) for p in tiny.encoder.parameters()}
    assert not encoder_ids & decoder_ids
    assert encoder_ids | decoder_ids == {id(p) for p in tiny.parameters()}


def test_encoder_loads_from_local_directory(tmp_path: Path) -> None:
    # an architecture unlike tiny's, so the checkpoint's own config must be the one used
    config = Dinov2Config(
        hidden_size=48, num_hidden_layers=4, num_attention_heads=2, intermediate_size=96
    )
    torch.manual_seed(1)
    saved = Dinov2Model(config)
    saved.save_pretrained(tmp_path)

    student = build_student("tiny", NUM_CLASSES, encoder=str(tmp_path))
    assert student.encoder.hidden_size == 48
    loaded = student.encoder.backbone.state_dict()
    for name, tensor in saved.state_dict().items():
        torch.testing.assert_close(loaded[name], tensor, rtol=0, atol=0, msg=name)
    assert student(torch.rand(1, 3, 56, 56)).mask_logits.shape[-2:] == (16, 16)


def test_config_dict_rebuilds_the_model(tmp_path: Path) -> None:
    Dinov2Model(
        Dinov2Config(hidden_size=48, num_hidden_layers=4, num_attention_heads=2)
    ).save_pretrained(tmp_path)
    student = build_student("tiny", NUM_CLASSES, encoder=str(tmp_path), num_queries=9).eval()
    rebuilt = build_student(**student.config_dict()).eval()
    rebuilt.load_state_dict(student.state_dict())
    images = torch.rand(1, 3, 56, 70)
    with torch.no_grad():
        expected, actual = student(images), rebuilt(images)
    assert rebuilt.config_dict() == student.config_dict()
    torch.testing.assert_close(actual.mask_logits, expected.mask_logits)
    torch.testing.assert_close(actual.embeddings, expected.embeddings)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="'huge'"):
        build_student("huge", NUM_CLASSES)
    with pytest.raises(ValueError, match="num_classes"):
        build_student("tiny", 0)


def test_paper_size_parameter_count() -> None:
    student = build_student("paper", 19)
    parts = {
        name: sum(p.numel() for p in getattr(student, name).parameters())
        for name in ("encoder", "neck", "decoder", "head")
    }
    total = sum(p.numel() for p in student.parameters())
    print({name: f"{count / 1e6:.2f}M" for name, count in parts.items()}, f"{total / 1e6:.2f}M")
    assert 21e6 < parts["encoder"] < 23e6  # DINOv2-S/14
    assert 45e6 < total < 60e6  # the paper's 52M student


def test_same_seed_gives_same_model_and_output() -> None:
    images = torch.rand(2, 3, 56, 56)

    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        student = build_student("tiny", NUM_CLASSES)
        return student(images).mask_logits  # train mode: dropout draws from the seed too

    first = run(0)
    torch.testing.assert_close(run(0), first, rtol=0, atol=0)
    assert not torch.allclose(run(1), first)


def test_embed_equals_the_forward_embeddings(tiny: Student) -> None:
    images = torch.rand(2, 3, 56, 84, generator=torch.Generator().manual_seed(3))
    tiny.eval()
    with torch.no_grad():
        torch.testing.assert_close(tiny.embed(images), tiny(images).embeddings)


def test_embed_skips_the_decoder_and_the_necks_finer_levels(tiny: Student) -> None:
    """L_pxl's strong view needs only the patch-stride embeddings: nothing of the decoder or of
    the neck's 2h and 4h levels (its costliest convolutions) runs for it."""
    ran: list[str] = []
    parts = {
        "decoder": tiny.decoder,
        "fusion 2h": tiny.neck.fusion[2],
        "fusion 4h": tiny.neck.fusion[3],
        "project 4h": tiny.neck.project[0],
        "project 2h": tiny.neck.project[1],
        "fusion h": tiny.neck.fusion[1],
    }
    hooks = [
        module.register_forward_hook(lambda *args, name=name: ran.append(name))
        for name, module in parts.items()
    ]
    tiny.embed(torch.rand(1, 3, 56, 56, generator=torch.Generator().manual_seed(4)))
    for hook in hooks:
        hook.remove()
    assert ran == ["fusion h"]
