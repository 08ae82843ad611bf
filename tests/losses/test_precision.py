"""The matcher, the set criterion and L_pxl under bf16 autocast: float32 results that agree with
the same computation without autocast (what Lightning's `bf16-mixed` runs them under)."""

import pytest
import torch

from castseg.losses.contrastive import (
    fused_pseudo_probabilities,
    pixel_contrastive_loss,
    sample_negatives,
    sampling_monitors,
)
from castseg.losses.matcher import HungarianMatcher
from castseg.losses.set_criterion import SetCriterion
from castseg.structures import Instances, LayerPredictions, Predictions

CLASSES, QUERIES, SIZE = 3, 6, 32


def autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def targets() -> list[Instances]:
    out = []
    for b in range(2):
        masks = torch.zeros(3, SIZE, SIZE, dtype=torch.bool)
        for k in range(3):
            masks[k, 8 * k : 8 * k + 10, 4 + b + 6 * k : 18 + 6 * k] = True
        out.append(Instances(masks, torch.tensor([0, 2, 1])))
    out.append(Instances(torch.zeros(0, SIZE, SIZE, dtype=torch.bool), torch.zeros(0).long()))
    return out


def predictions(dtype: torch.dtype) -> Predictions:
    g = torch.Generator().manual_seed(0)
    mask_logits = torch.randn(3, QUERIES, SIZE // 4, SIZE // 4, generator=g)
    class_logits = torch.randn(3, QUERIES, CLASSES + 1, generator=g)
    aux = [LayerPredictions(mask_logits.to(dtype) * 0.5, class_logits.to(dtype) * 0.5)]
    return Predictions(mask_logits.to(dtype), class_logits.to(dtype), aux=aux)


def test_matcher_costs_are_float32_and_match_under_bf16_autocast():
    matcher = HungarianMatcher(num_points=256)
    pred = predictions(torch.bfloat16)
    layer = LayerPredictions(pred.mask_logits, pred.class_logits)
    reference = matcher.matching_costs(layer, targets(), torch.Generator().manual_seed(1))
    with autocast():
        costs = matcher.matching_costs(layer, targets(), torch.Generator().manual_seed(1))
        indices = matcher(layer, targets(), torch.Generator().manual_seed(1))
    assert all(c.dtype == torch.float32 for c in costs)  # the empty image's [K, 0] too
    for cost, ref in zip(costs, reference, strict=True):
        torch.testing.assert_close(cost, ref)
    assert [len(p) for p, _ in indices] == [3, 3, 0]


def test_criterion_terms_are_float32_and_agree_with_fp32_under_bf16_autocast():
    criterion = SetCriterion(CLASSES, HungarianMatcher(num_points=256), num_points=256)
    reference = criterion(predictions(torch.float32), targets(), torch.Generator().manual_seed(2))
    pred = predictions(torch.float32)
    pred.mask_logits.requires_grad_(True)
    with autocast():
        # The model's outputs under autocast are bf16; the criterion gets them as they are.
        half = Predictions(
            pred.mask_logits.bfloat16(),
            pred.class_logits.bfloat16(),
            aux=[LayerPredictions(a.mask_logits, a.class_logits) for a in pred.aux],
        )
        terms = criterion(half, targets(), torch.Generator().manual_seed(2))
    assert set(terms) == set(reference)
    for key, value in terms.items():
        assert value.dtype == torch.float32, key
        # Only the inputs were rounded to bf16 (8 bits of mantissa).
        torch.testing.assert_close(value, reference[key], rtol=0.02, atol=0.02)
    sum(terms.values()).backward()
    assert torch.isfinite(pred.mask_logits.grad).all()


def test_pixel_contrastive_loss_and_sampler_in_float32_under_bf16_autocast():
    g = torch.Generator().manual_seed(3)
    z_weak = torch.randn(2, 64, 16, generator=g, requires_grad=True)
    z_strong = torch.randn(2, 64, 16, generator=g)
    pred = predictions(torch.float32)
    y_tilde = fused_pseudo_probabilities(pred.mask_logits[:2], pred.class_logits[:2], (8, 8))
    negatives = sample_negatives(y_tilde, 16, generator=torch.Generator().manual_seed(4))
    reference = pixel_contrastive_loss(z_weak, z_strong, negatives, 0.1)
    with autocast():
        fused = fused_pseudo_probabilities(
            pred.mask_logits[:2].bfloat16(), pred.class_logits[:2].bfloat16(), (8, 8)
        )
        drawn = sample_negatives(fused, 16, generator=torch.Generator().manual_seed(4))
        loss = pixel_contrastive_loss(z_weak.bfloat16(), z_strong.bfloat16(), negatives, 0.1)
        # One region per image: a negative is false exactly when it comes from its anchor's image.
        monitors = sampling_monitors(
            torch.zeros(2, 64, dtype=torch.long), negatives, z_weak.bfloat16(), z_strong
        )
    same_image = negatives // 64 == torch.arange(2).view(2, 1, 1)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused, y_tilde, rtol=0.02, atol=0.01)
    assert drawn.shape == negatives.shape and drawn.dtype == torch.long
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference, rtol=0.02, atol=0.02)
    assert monitors["fnr"] == pytest.approx(same_image.float().mean().item())
    loss.backward()
    assert torch.isfinite(z_weak.grad).all()


def test_gathered_dot_inputs_of_mixed_dtypes_under_autocast():
    """bf16 anchors beside a float32 bank once made torch.sparse.sampled_addmm refuse them."""
    g = torch.Generator().manual_seed(5)
    z_weak, z_strong = torch.randn(1, 40, 8, generator=g), torch.randn(1, 40, 8, generator=g)
    index = torch.randint(0, 40, (1, 40, 6), generator=g)
    reference = pixel_contrastive_loss(z_weak, z_strong, index, 0.5)
    with autocast():
        loss = pixel_contrastive_loss(z_weak.bfloat16(), z_strong, index, 0.5)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference, rtol=0.02, atol=0.02)
