"""instances_from_predictions on cases small enough to compute by hand."""

from __future__ import annotations

import math

import pytest
import torch

from castseg.evaluation.instance_inference import instances_from_predictions


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def constructed_case() -> tuple[torch.Tensor, torch.Tensor]:
    """3 queries, 2 classes on a 4x4 grid.

    Class probabilities (softmax of log-probabilities): q0 [.7, .2 | .1], q1 [.1, .6 | .3],
    q2 [.05, .05 | .9]. q0's mask is the top-left 2x2 block at logit 2; q1's is the bottom row,
    two pixels at logit 1 and two at logit 3; q2's mask is empty.
    """
    class_logits = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.05, 0.05, 0.9]]).log()
    mask_logits = torch.full((3, 4, 4), -4.0)
    mask_logits[0, :2, :2] = 2.0
    mask_logits[1, 3] = torch.tensor([1.0, 1.0, 3.0, 3.0])
    return mask_logits, class_logits


def test_top_k_pairs_and_scores_by_hand():
    mask_logits, class_logits = constructed_case()
    out = instances_from_predictions(mask_logits, class_logits, (4, 4), top_k=3)
    # top-3 (query, class) by class probability: (0, 0) .7, (1, 1) .6, (0, 1) .2
    expected_scores = [
        0.7 * sigmoid(2.0),
        0.6 * (2 * sigmoid(1.0) + 2 * sigmoid(3.0)) / 4,
        0.2 * sigmoid(2.0),
    ]
    assert out["labels"].tolist() == [0, 1, 1]
    assert out["scores"].tolist() == pytest.approx(expected_scores, rel=1e-5)
    assert out["masks"].dtype == torch.bool and out["masks"].shape == (3, 4, 4)
    assert out["masks"][0].sum() == 4 and out["masks"][0, :2, :2].all()
    assert out["masks"][1].nonzero()[:, 0].tolist() == [3, 3, 3, 3]
    torch.testing.assert_close(out["masks"][2], out["masks"][0])
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.7, 0.2, 0.1]])
    torch.testing.assert_close(out["class_probs"], probs)


def test_empty_masks_and_low_scores_are_dropped():
    mask_logits, class_logits = constructed_case()
    everything = instances_from_predictions(mask_logits, class_logits, (4, 4), top_k=100)
    # 6 (query, class) pairs, but q2's two pairs have an empty mask
    assert len(everything["scores"]) == 4
    assert (everything["scores"][:-1] >= everything["scores"][1:]).all()
    kept = instances_from_predictions(
        mask_logits, class_logits, (4, 4), top_k=100, score_threshold=0.3
    )
    assert kept["scores"].tolist() == pytest.approx(everything["scores"][:2].tolist())


def test_masks_are_upsampled_bilinearly_before_thresholding():
    # 2x2 logits [[5, -5], [-5, -5]] upsampled to 4x4 (align_corners=False): output pixel (1, 1)
    # reads source point (0.25, 0.25) = .75*.75*5 - (1 - .75*.75)*5 = 0.625 > 0; pixel (1, 2) reads
    # (0.25, 0.75) = .75*.25*5 - (1 - .75*.25)*5 < 0. So the mask is the top-left 2x2 block.
    mask_logits = torch.tensor([[[5.0, -5.0], [-5.0, -5.0]]])
    class_logits = torch.tensor([[3.0, 0.0]])
    out = instances_from_predictions(mask_logits, class_logits, (4, 4))
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[:2, :2] = True
    assert torch.equal(out["masks"][0], expected)
    inside = [5.0, 2.5, 2.5, 0.625]  # bilinear logits of the four pixels inside the mask
    class_prob = math.exp(3.0) / (math.exp(3.0) + 1)
    assert out["scores"].item() == pytest.approx(
        class_prob * sum(sigmoid(v) for v in inside) / 4, rel=1e-5
    )


def test_shape_errors():
    mask_logits, class_logits = constructed_case()
    with pytest.raises(ValueError, match="queries"):
        instances_from_predictions(mask_logits[:2], class_logits, (4, 4))
    with pytest.raises(ValueError, match=r"\[K, h, w\]"):
        instances_from_predictions(mask_logits[None], class_logits, (4, 4))


def test_per_query_selection_gives_each_query_one_class():
    mask_logits = torch.full((2, 4, 4), -10.0)
    mask_logits[0, :2] = 10.0
    mask_logits[1, 2:] = 10.0
    # Query 0 is split between classes 0 and 1; query 1 is confidently class 2.
    class_logits = torch.log(torch.tensor([[0.45, 0.45, 0.05, 0.05], [0.02, 0.02, 0.9, 0.06]]))
    pairs = instances_from_predictions(mask_logits, class_logits, (4, 4), top_k=10)
    assert sorted(pairs["labels"][:3].tolist()) == [0, 1, 2]
    one = instances_from_predictions(mask_logits, class_logits, (4, 4), top_k=10, per_query=True)
    assert one["labels"].tolist() == [2, 0]
    assert torch.allclose(one["scores"], torch.tensor([0.9, 0.45]), atol=1e-3)
