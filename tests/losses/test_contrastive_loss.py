"""L_pxl against a brute-force loop over anchors of the paper's formula."""

import math

import pytest
import torch
import torch.nn.functional as F

from castseg.losses.contrastive import pixel_contrastive_loss
from castseg.losses.contrastive.gathered_dot import gathered_dot


def brute_force(z_weak, z_strong, negatives, temperature, valid=None, margin=None):
    batch, pixels, dim = z_weak.shape
    flat_strong = z_strong.reshape(-1, dim)
    losses = []
    for b in range(batch):
        for p in range(pixels):
            if valid is not None and not valid[b, p]:
                continue
            anchor = z_weak[b, p] / z_weak[b, p].norm()
            positive = z_strong[b, p] / z_strong[b, p].norm()
            cos_pos = float(anchor @ positive)
            cos_negs = [
                float(anchor @ (flat_strong[q] / flat_strong[q].norm())) for q in negatives[b, p]
            ]
            if margin is None:
                denom = math.exp(cos_pos / temperature) + sum(
                    math.exp(c / temperature) for c in cos_negs
                )
                losses.append(-math.log(math.exp(cos_pos / temperature) / denom))
            else:
                losses.append(sum(max(0.0, margin - cos_pos + c) for c in cos_negs) / len(cos_negs))
    return sum(losses) / len(losses)


def make_inputs(seed=0, batch=2, pixels=9, dim=5, negs=6):
    g = torch.Generator().manual_seed(seed)
    z_weak = torch.randn(batch, pixels, dim, generator=g, dtype=torch.float64)
    z_strong = torch.randn(batch, pixels, dim, generator=g, dtype=torch.float64)
    negatives = torch.randint(0, batch * pixels, (batch, pixels, negs), generator=g)
    valid = torch.rand(batch, pixels, generator=g) > 0.4
    return z_weak, z_strong, negatives, valid


@pytest.mark.parametrize("use_valid", [False, True])
@pytest.mark.parametrize("temperature", [0.2, 0.7])
def test_nt_xent_equals_brute_force(use_valid, temperature):
    z_weak, z_strong, negatives, valid = make_inputs()
    valid = valid if use_valid else None
    loss = pixel_contrastive_loss(z_weak, z_strong, negatives, temperature, valid=valid)
    expected = brute_force(z_weak, z_strong, negatives, temperature, valid)
    assert abs(float(loss) - expected) < 1e-5


def test_hinge_equals_brute_force():
    z_weak, z_strong, negatives, valid = make_inputs(seed=3)
    loss = pixel_contrastive_loss(z_weak, z_strong, negatives, 0.2, valid=valid, margin=0.1)
    assert abs(float(loss) - brute_force(z_weak, z_strong, negatives, 0.2, valid, 0.1)) < 1e-5


def test_invalid_anchors_do_not_contribute():
    z_weak, z_strong, negatives, valid = make_inputs(seed=1)
    base = pixel_contrastive_loss(z_weak, z_strong, negatives, 0.2, valid=valid)
    changed = z_weak.clone()
    changed[~valid] = torch.randn_like(changed[~valid])
    assert torch.allclose(
        base, pixel_contrastive_loss(changed, z_strong, negatives, 0.2, valid=valid)
    )
    full = pixel_contrastive_loss(changed, z_strong, negatives, 0.2)
    assert not torch.allclose(base, full)


def test_no_valid_anchor_gives_zero_with_a_graph():
    z_weak, z_strong, negatives, _ = make_inputs()
    z_weak.requires_grad_(True)
    loss = pixel_contrastive_loss(
        z_weak, z_strong, negatives, 0.2, valid=torch.zeros(2, 9, dtype=torch.bool)
    )
    loss.backward()
    assert loss.item() == 0.0 and z_weak.grad is not None


def test_aligned_views_and_far_negatives_give_low_loss():
    z = F.normalize(torch.eye(8)[None], dim=-1)
    negatives = torch.tensor([[[q for q in range(8) if q != p][:4] for p in range(8)]])
    low = pixel_contrastive_loss(z, z, negatives, 0.1)
    high = pixel_contrastive_loss(z, z.roll(1, dims=1), negatives, 0.1)
    assert float(low) < 0.01 < float(high)


@pytest.mark.parametrize("negatives", [5, 12])  # 12 > the 9 rows indexed
def test_gathered_dot_gradients_match_autograd(negatives):
    g = torch.Generator().manual_seed(0)
    anchors = torch.randn(7, 4, dtype=torch.float64, generator=g, requires_grad=True)
    bank = torch.randn(9, 4, dtype=torch.float64, generator=g, requires_grad=True)
    index = torch.randint(0, 9, (7, negatives), generator=g)
    assert torch.autograd.gradcheck(gathered_dot, (anchors, bank, index))
    reference = torch.einsum("nd,nrd->nr", anchors, bank[index])
    assert torch.allclose(gathered_dot(anchors, bank, index), reference)


def test_gradients_flow_to_both_views():
    z_weak, z_strong, negatives, valid = make_inputs()
    z_weak.requires_grad_(True)
    z_strong.requires_grad_(True)
    pixel_contrastive_loss(z_weak, z_strong, negatives, 0.2, valid=valid).backward()
    assert z_weak.grad.abs().sum() > 0 and z_strong.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(z_strong=torch.randn(2, 8, 5)), "z_weak and z_strong"),
        (dict(negatives=torch.zeros(2, 8, 3, dtype=torch.long)), "negatives"),
        (dict(negatives=torch.zeros(2, 9, 0, dtype=torch.long)), "R >= 1"),
        (dict(temperature=0.0), "temperature"),
        (dict(valid=torch.ones(2, 8, dtype=torch.bool)), "valid"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, words):
    z_weak, z_strong, negatives, _ = make_inputs()
    args = dict(z_weak=z_weak, z_strong=z_strong, negatives=negatives, temperature=0.2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=words):
        pixel_contrastive_loss(**args)
