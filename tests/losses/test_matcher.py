import itertools
import math

import torch

from castseg.losses.matcher import HungarianMatcher
from castseg.structures import Instances, LayerPredictions


def random_instances(num: int, size: int, num_classes: int, seed: int) -> Instances:
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(num, size, size, generator=g) > 0.5
    return Instances(masks, torch.randint(num_classes, (num,), generator=g))


def random_predictions(batch: int, queries: int, size: int, num_classes: int) -> LayerPredictions:
    g = torch.Generator().manual_seed(123)
    return LayerPredictions(
        torch.randn(batch, queries, size, size, generator=g) * 3,
        torch.randn(batch, queries, num_classes + 1, generator=g),
    )


def loop_cost(mask_logits, class_logits, target, coords, matcher) -> torch.Tensor:
    """The matching cost pair by pair, reading masks by indexing at pixel-centre coordinates."""
    size = target.masks.shape[-1]
    cols, rows = (coords * size - 0.5).round().long().unbind(-1)
    valid = torch.ones(len(coords), dtype=torch.bool)
    if target.ignore is not None:
        valid = ~target.ignore[rows, cols]
    cost = torch.zeros(len(mask_logits), len(target))
    for k in range(len(mask_logits)):
        p_class = class_logits[k].softmax(-1)
        for m in range(len(target)):
            bce, inter, p_sum, t_sum, n = 0.0, 0.0, 0.0, 0.0, 0
            for r, c, v in zip(rows.tolist(), cols.tolist(), valid.tolist(), strict=True):
                if not v:
                    continue
                p = 1 / (1 + math.exp(-mask_logits[k, r, c].item()))
                t = float(target.masks[m, r, c])
                bce -= t * math.log(p) + (1 - t) * math.log(1 - p)
                inter, p_sum, t_sum, n = inter + p * t, p_sum + p, t_sum + t, n + 1
            dice = 1 - (2 * inter + 1) / (p_sum + t_sum + 1)
            cost[k, m] = (
                -matcher.cost_class * p_class[target.labels[m]]
                + matcher.cost_mask * bce / n
                + matcher.cost_dice * dice
            )
    return cost


def test_cost_matrix_matches_pairwise_formula():
    size, num_classes = 6, 4
    pred = random_predictions(1, 3, size, num_classes)
    target = random_instances(2, size, num_classes, seed=0)
    target.ignore = torch.zeros(size, size, dtype=torch.bool)
    target.ignore[:2, :3] = True
    # Pixel centres, so that bilinear reads are exact and the loop can index directly.
    g = torch.Generator().manual_seed(5)
    coords = (torch.randint(size, (40, 2), generator=g).float() + 0.5) / size
    matcher = HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=3.0, num_points=40)

    cost = matcher.cost_matrix(pred.mask_logits[0], pred.class_logits[0], target, coords)
    expected = loop_cost(pred.mask_logits[0], pred.class_logits[0], target, coords, matcher)
    torch.testing.assert_close(cost, expected, rtol=1e-4, atol=1e-4)


def brute_force_best(cost: torch.Tensor) -> float:
    """Smallest total cost of a one-to-one assignment of min(K, M) pairs."""
    k, m = cost.shape
    if k >= m:
        return min(
            sum(cost[q, t].item() for t, q in enumerate(perm))
            for perm in itertools.permutations(range(k), m)
        )
    return min(
        sum(cost[q, t].item() for q, t in enumerate(perm))
        for perm in itertools.permutations(range(m), k)
    )


def test_assignment_is_the_best_permutation():
    size, num_classes, queries = 8, 3, 5
    targets = [
        random_instances(3, size, num_classes, seed=1),
        random_instances(0, size, num_classes, seed=2),
        random_instances(7, size, num_classes, seed=3),  # more targets than queries
    ]
    pred = random_predictions(3, queries, size, num_classes)
    matcher = HungarianMatcher(num_points=50)

    costs = matcher.matching_costs(pred, targets, torch.Generator().manual_seed(0))
    indices = matcher(pred, targets, torch.Generator().manual_seed(0))

    for cost, target, (pred_idx, tgt_idx) in zip(costs, targets, indices, strict=True):
        assert cost.shape == (queries, len(target))
        assert pred_idx.dtype == tgt_idx.dtype == torch.long
        assert len(pred_idx) == len(tgt_idx) == min(queries, len(target))
        assert len(set(pred_idx.tolist())) == len(pred_idx)
        assert len(set(tgt_idx.tolist())) == len(tgt_idx)
        if len(target):
            total = cost[pred_idx, tgt_idx].sum().item()
            assert math.isclose(total, brute_force_best(cost), rel_tol=1e-5, abs_tol=1e-5)


def test_matcher_recovers_permuted_copies_of_the_targets():
    size, num_classes = 16, 4
    target = random_instances(4, size, num_classes, seed=7)
    order = torch.tensor([2, 0, 3, 1])
    mask_logits = (target.masks.float() * 2 - 1) * 10
    class_logits = torch.full((4, num_classes + 1), -5.0)
    class_logits[torch.arange(4), target.labels] = 5.0
    pred = LayerPredictions(mask_logits[order][None], class_logits[order][None])

    ((pred_idx, tgt_idx),) = HungarianMatcher(num_points=200)(pred, [target])
    assert order[pred_idx].tolist() == tgt_idx.tolist()


def test_matcher_survives_non_finite_predictions():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :4] = True
    masks[1, 4:] = True
    pred = LayerPredictions(torch.full((1, 3, 8, 8), float("nan")), torch.zeros(1, 3, 4))
    ((rows, cols),) = HungarianMatcher(num_points=16)(
        pred, [Instances(masks, torch.tensor([0, 1]))]
    )
    assert len(rows) == len(cols) == 2
