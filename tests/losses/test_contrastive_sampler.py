"""The negative sampler draws exactly ∝ f(1 − ⟨ỹ_a, ỹ_q⟩), never the anchor, deterministically."""

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import chisquare

from castseg.losses.contrastive import fused_pseudo_probabilities, sample_negatives

DRAWS = 120_000


def random_fused(batch=2, pixels=12, dims=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.rand(batch, pixels, dims, generator=g) ** 3, dim=-1)


def expected_probabilities(y, anchor, transform=lambda s: s):
    flat = y.reshape(-1, y.shape[-1]).double()
    s = transform((1.0 - flat @ flat[anchor]).clamp(0.0, 1.0))
    s[anchor] = 0.0
    return s / s.sum()


def assert_matches(y, draws, anchors, transform=lambda s: s):
    flat = draws.reshape(-1, draws.shape[-1])
    total = flat.shape[0]
    for anchor in anchors:
        counts = torch.bincount(flat[anchor], minlength=total).double()
        probs = expected_probabilities(y, anchor, transform)
        support = probs > 0
        assert counts[~support].sum() == 0, f"anchor {anchor} drew a zero-probability pixel"
        result = chisquare(counts[support].numpy(), (probs[support] * counts.sum()).numpy())
        assert result.pvalue > 1e-3, f"anchor {anchor}: p = {result.pvalue}"


@pytest.mark.parametrize(
    "score, transform",
    [("identity", lambda s: s), ("square", lambda s: s**2), ("sqrt", lambda s: s.sqrt())],
)
def test_frequencies_follow_debiased_score(score, transform):
    y = random_fused()
    draws = sample_negatives(y, DRAWS, score=score, generator=torch.Generator().manual_seed(1))
    assert draws.shape == (2, 12, DRAWS)
    assert_matches(y, draws, anchors=[0, 5, 13, 23], transform=transform)


@pytest.mark.parametrize("mode", ["fusion", "uniform"])
def test_candidate_only_rows_are_drawn_but_draw_nothing(mode):
    y = random_fused()  # 24 flat pixels; the last 9 stand for memory-bank rows
    generator = torch.Generator().manual_seed(2)
    draws = sample_negatives(y, DRAWS, mode=mode, num_anchors=15, generator=generator)
    flat = draws.reshape(24, DRAWS)
    assert (flat[15:] == 0).all()
    assert (flat[:15] >= 15).any(), "anchors must also draw the candidate-only rows"
    if mode == "fusion":
        assert_matches(y, draws, anchors=[0, 14])
    with pytest.raises(ValueError, match="num_anchors"):
        sample_negatives(y, 4, num_anchors=25)


def test_the_wrong_distribution_is_rejected():
    """The chi-square check itself can fail: uniform draws do not pass as debiased ones."""
    y = random_fused()
    draws = sample_negatives(y, DRAWS, mode="uniform", generator=torch.Generator().manual_seed(1))
    with pytest.raises(AssertionError):
        assert_matches(y, draws, anchors=[0])


def test_low_acceptance_anchors_are_sampled_exactly():
    """Most pixels copy the anchor's vector: acceptance is tiny and the exact path takes over."""
    y = random_fused(batch=1, pixels=40)
    y[0, 1:37] = y[0, 0]
    draws = sample_negatives(y, DRAWS, generator=torch.Generator().manual_seed(2))
    assert_matches(y, draws, anchors=[0, 3, 38])


def test_all_identical_pixels_fall_back_to_uniform():
    y = F.normalize(torch.ones(1, 6, 4), dim=-1)
    draws = sample_negatives(y, 6000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(draws[0, 2], minlength=6)
    assert counts[2] == 0
    assert (counts[[0, 1, 3, 4, 5]] > 1000).all()


def test_anchor_never_samples_itself():
    y = random_fused(batch=3, pixels=20)
    draws = sample_negatives(y, 512, generator=torch.Generator().manual_seed(3))
    anchors = torch.arange(60).view(3, 20, 1)
    assert not (draws == anchors).any()
    assert draws.min() >= 0 and draws.max() < 60


def test_negatives_come_from_the_whole_batch():
    y = random_fused(batch=2, pixels=10)
    draws = sample_negatives(y, 2000, generator=torch.Generator().manual_seed(4))
    assert (draws[0] >= 10).any() and (draws[1] < 10).any()


def test_same_generator_same_draws():
    y = random_fused()
    a = sample_negatives(y, 64, generator=torch.Generator().manual_seed(7))
    b = sample_negatives(y, 64, generator=torch.Generator().manual_seed(7))
    c = sample_negatives(y, 64, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_uniform_mode_is_uniform():
    y = random_fused()
    draws = sample_negatives(y, DRAWS, mode="uniform", generator=torch.Generator().manual_seed(5))
    counts = torch.bincount(draws.reshape(24, -1)[4], minlength=24).double()
    assert counts[4] == 0
    others = torch.cat([counts[:4], counts[5:]])
    assert chisquare(others.numpy()).pvalue > 1e-3


def fused_with_parts(mask_parts, class_parts):
    return F.normalize(torch.cat([mask_parts, class_parts], dim=-1), dim=-1)[None]


def test_mask_only_ignores_the_class_part():
    masks = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1]])
    classes = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]])
    y = fused_with_parts(masks, classes)
    draws = sample_negatives(
        y, DRAWS, mode="mask_only", num_mask_channels=3, generator=torch.Generator().manual_seed(0)
    )
    counts = torch.bincount(draws[0, 0], minlength=4).double()
    # Pixels 1 and 2 share their mask part and differ in class: equally likely from anchor 0.
    assert chisquare(counts[1:3].numpy()).pvalue > 1e-3
    # Pixel 2 and 1 are identical in mask part, so from anchor 1 pixel 2 has zero probability.
    assert torch.bincount(draws[0, 1], minlength=4)[2] == 0


def test_class_only_ignores_the_mask_part():
    masks = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    classes = torch.tensor([[1.0, 0], [0, 1], [0, 1], [1, 0]])
    y = fused_with_parts(masks, classes)
    draws = sample_negatives(
        y, DRAWS, mode="class_only", num_mask_channels=3, generator=torch.Generator().manual_seed(0)
    )
    counts = torch.bincount(draws[0, 0], minlength=4).double()
    assert counts[3] == 0  # same class as the anchor, different mask: not a negative
    assert chisquare(counts[1:3].numpy()).pvalue > 1e-3


def test_fused_vector_is_the_normalised_concatenation():
    g = torch.Generator().manual_seed(0)
    mask_logits, class_logits = (
        torch.randn(2, 5, 6, 6, generator=g),
        torch.randn(2, 5, 4, generator=g),
    )
    y = fused_pseudo_probabilities(mask_logits, class_logits, (6, 6))
    b, p = 1, 17
    p_m = mask_logits[b].reshape(5, -1)[:, p].softmax(0)
    f_c = sum(p_m[k] * class_logits[b, k].softmax(0) for k in range(5))
    expected = torch.cat([p_m, f_c])
    assert torch.allclose(y[b, p], expected / expected.norm(), atol=1e-6)
    assert y.shape == (2, 36, 5 + 4)


def test_fused_resizes_to_the_embedding_map():
    y = fused_pseudo_probabilities(torch.randn(1, 3, 16, 16), torch.randn(1, 3, 3), (4, 8))
    assert y.shape == (1, 32, 6)
    assert torch.allclose(y.norm(dim=-1), torch.ones(1, 32))


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: sample_negatives(torch.rand(2, 4), 3), "y_tilde"),
        (lambda: sample_negatives(torch.rand(1, 4, 3), 0), "num_negatives"),
        (lambda: sample_negatives(torch.rand(1, 1, 3), 3), "at least 2 pixels"),
        (lambda: sample_negatives(torch.rand(1, 4, 3), 3, mode="mask"), "mode"),
        (lambda: sample_negatives(torch.rand(1, 4, 3), 3, score="cube"), "score"),
        (lambda: sample_negatives(torch.rand(1, 4, 3), 3, mode="mask_only"), "num_mask_channels"),
        (
            lambda: fused_pseudo_probabilities(torch.rand(1, 3, 4, 4), torch.rand(1, 4, 5), (2, 2)),
            "class_logits",
        ),
        (
            lambda: fused_pseudo_probabilities(torch.rand(3, 4, 4), torch.rand(1, 3, 5), (2, 2)),
            "mask_logits",
        ),
    ],
)
def test_bad_arguments_name_the_argument(call, words):
    with pytest.raises(ValueError, match=words):
        call()
