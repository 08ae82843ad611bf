import math

import pytest
import torch
import torch.nn.functional as F

from castseg.losses.matcher import HungarianMatcher
from castseg.losses.set_criterion import SetCriterion
from castseg.structures import Instances, LayerPredictions, Predictions

NUM_CLASSES, QUERIES, SIZE, POINTS = 3, 5, 32, 256


def block_instances(labels: list[int], ignore: torch.Tensor | None = None) -> Instances:
    """Non-overlapping square instances on a SIZE x SIZE image."""
    masks = torch.zeros(len(labels), SIZE, SIZE, dtype=torch.bool)
    for i in range(len(labels)):
        masks[i, 8 * i : 8 * i + 12, 4 + 6 * i : 20 + 6 * i] = True
    return Instances(masks, torch.tensor(labels, dtype=torch.long), ignore=ignore)


def full_instances(labels: list[int], ignore: torch.Tensor | None = None) -> Instances:
    """Instances that each cover the whole image, told apart by their labels."""
    masks = torch.ones(len(labels), SIZE, SIZE, dtype=torch.bool)
    return Instances(masks, torch.tensor(labels, dtype=torch.long), ignore=ignore)


def perfect_layer(targets: list[Instances]) -> LayerPredictions:
    """Confident predictions equal to the targets; spare queries say no-object."""
    mask_logits = torch.full((len(targets), QUERIES, SIZE, SIZE), -20.0)
    class_logits = torch.full((len(targets), QUERIES, NUM_CLASSES + 1), -10.0)
    class_logits[..., -1] = 10.0
    for b, t in enumerate(targets):
        n = len(t)
        mask_logits[b, :n] = (t.masks.float() * 2 - 1) * 20
        class_logits[b, :n, -1] = -10.0
        class_logits[b, torch.arange(n), t.labels] = 10.0
    return LayerPredictions(mask_logits, class_logits)


def random_layer(batch: int, seed: int) -> LayerPredictions:
    g = torch.Generator().manual_seed(seed)
    return LayerPredictions(
        torch.randn(batch, QUERIES, SIZE // 4, SIZE // 4, generator=g).requires_grad_(),
        torch.randn(batch, QUERIES, NUM_CLASSES + 1, generator=g).requires_grad_(),
    )


def as_predictions(
    final: LayerPredictions, aux: list[LayerPredictions] | None = None
) -> Predictions:
    return Predictions(final.mask_logits, final.class_logits, aux=aux or [])


def criterion(**kwargs) -> SetCriterion:
    return SetCriterion(
        NUM_CLASSES, HungarianMatcher(num_points=POINTS), num_points=POINTS, **kwargs
    )


def losses_of(crit: SetCriterion, pred: Predictions, targets: list[Instances], seed: int = 0):
    return crit(pred, targets, generator=torch.Generator().manual_seed(seed))


def test_perfect_predictions_give_near_zero_losses():
    # Full-image masks have no boundary, where bilinear reads of a binary target are soft and
    # even a perfect prediction pays their entropy.
    targets = [full_instances([0, 2]), full_instances([1, 2, 0])]
    losses = losses_of(criterion(), as_predictions(perfect_layer(targets)), targets)
    assert set(losses) == {"loss_class", "loss_mask", "loss_dice"}
    for key, value in losses.items():
        assert value < 1e-4, key


def test_perfect_block_masks_beat_shifted_ones():
    targets = [block_instances([0, 2]), block_instances([1, 1, 0])]
    perfect = perfect_layer(targets)
    shifted = LayerPredictions(perfect.mask_logits.roll(4, dims=-1), perfect.class_logits)
    crit = criterion()
    good = losses_of(crit, as_predictions(perfect), targets)
    bad = losses_of(crit, as_predictions(shifted), targets)
    assert good["loss_class"] < 1e-4
    assert good["loss_mask"] < bad["loss_mask"] / 3
    assert good["loss_dice"] < bad["loss_dice"] / 2


def test_constant_logits_give_closed_form_losses():
    # Logit 0 gives BCE log 2 for any target; full masks read 1 at every point. The second image
    # has more targets than queries: 1 + QUERIES pairs are matched, and the sums are divided by
    # all 1 + QUERIES + 3 target instances.
    targets = [full_instances([1]), full_instances([1] * (QUERIES + 3))]
    pred = as_predictions(
        LayerPredictions(torch.zeros(2, QUERIES, 8, 8), torch.zeros(2, QUERIES, NUM_CLASSES + 1))
    )
    losses = losses_of(criterion(), pred, targets)
    matched_share = (1 + QUERIES) / (1 + QUERIES + 3)
    torch.testing.assert_close(losses["loss_mask"], torch.tensor(matched_share * math.log(2)))
    dice = 1 - (POINTS + 1) / (1.5 * POINTS + 1)
    torch.testing.assert_close(losses["loss_dice"], torch.tensor(matched_share * dice))
    # Every query has uniform class probabilities, so the weighted mean is log(C + 1).
    torch.testing.assert_close(losses["loss_class"], torch.tensor(math.log(NUM_CLASSES + 1)))


def test_class_loss_is_weighted_cross_entropy_over_all_queries():
    targets = [block_instances([0, 2]), block_instances([1])]
    layer = random_layer(2, seed=1)
    crit = criterion(no_object_weight=0.25)
    loss = losses_of(crit, as_predictions(layer), targets)["loss_class"]

    indices = crit.matcher(layer, targets, torch.Generator().manual_seed(0))
    labels = torch.full((2, QUERIES), NUM_CLASSES)
    for b, (p, t) in enumerate(indices):
        labels[b, p] = targets[b].labels[t]
    nll = -F.log_softmax(layer.class_logits, -1).gather(-1, labels[..., None])[..., 0]
    weight = torch.where(labels == NUM_CLASSES, 0.25, 1.0)
    torch.testing.assert_close(loss, (weight * nll).sum() / weight.sum())


def test_permuting_queries_leaves_losses_unchanged():
    targets = [block_instances([0, 2, 1]), block_instances([1])]
    layer, aux = random_layer(2, seed=2), random_layer(2, seed=3)
    order = torch.tensor([3, 0, 4, 1, 2])

    def permuted(lp: LayerPredictions) -> LayerPredictions:
        return LayerPredictions(lp.mask_logits[:, order], lp.class_logits[:, order])

    crit = criterion()
    before = losses_of(crit, as_predictions(layer, [aux]), targets)
    after = losses_of(crit, as_predictions(permuted(layer), [permuted(aux)]), targets)
    assert before.keys() == after.keys()
    for key in before:
        torch.testing.assert_close(before[key], after[key], msg=key)


def test_gradients_reach_final_and_auxiliary_layers():
    targets = [block_instances([0, 2]), block_instances([1])]
    final, aux = random_layer(2, seed=4), [random_layer(2, seed=5), random_layer(2, seed=6)]
    losses = losses_of(criterion(), as_predictions(final, aux), targets)
    suffixes = ["", "_0", "_1"]
    assert set(losses) == {f"loss_{n}{s}" for n in ("class", "mask", "dice") for s in suffixes}
    sum(losses.values()).backward()
    for layer in [final, *aux]:
        assert layer.mask_logits.grad.abs().sum() > 0
        assert layer.class_logits.grad.abs().sum() > 0


def test_empty_targets_train_every_query_towards_no_object():
    targets = [Instances.empty(SIZE, SIZE), Instances.empty(SIZE, SIZE)]
    final, aux = random_layer(2, seed=7), random_layer(2, seed=8)
    losses = losses_of(criterion(), as_predictions(final, [aux]), targets)
    assert losses["loss_mask"] == 0 and losses["loss_dice"] == 0
    no_object = torch.full((2 * QUERIES,), NUM_CLASSES)
    expected = F.cross_entropy(final.class_logits.reshape(-1, NUM_CLASSES + 1), no_object)
    torch.testing.assert_close(losses["loss_class"], expected)
    sum(losses.values()).backward()
    assert final.class_logits.grad.abs().sum() > 0
    assert final.mask_logits.grad is not None


def test_batch_mixing_empty_and_labelled_images():
    targets = [Instances.empty(SIZE, SIZE), block_instances([2])]
    final = random_layer(2, seed=9)
    losses = losses_of(criterion(), as_predictions(final), targets)
    sum(losses.values()).backward()
    assert final.mask_logits.grad[0].abs().sum() == 0
    assert final.mask_logits.grad[1].abs().sum() > 0


def test_crowd_regions_do_not_contribute():
    ignore = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    ignore[12:, :] = True
    targets = [full_instances([0, 1], ignore=ignore)]
    perfect = perfect_layer(targets)
    wrong_masks = perfect.mask_logits.clone()
    wrong_masks[..., 12:, :] = -20.0  # every query misses the crowd region
    wrong = as_predictions(LayerPredictions(wrong_masks, perfect.class_logits))

    crit = criterion()
    reference = losses_of(crit, as_predictions(perfect), targets)
    with_crowd = losses_of(crit, wrong, targets)
    targets[0].ignore = None
    without_crowd = losses_of(crit, wrong, targets)
    for key in ("loss_mask", "loss_dice"):
        assert abs(with_crowd[key] - reference[key]) < 1e-4, key
        assert without_crowd[key] > 0.2, key


def test_bad_arguments_raise():
    targets = [block_instances([0])]
    crit = criterion()
    wrong_classes = LayerPredictions(torch.zeros(1, QUERIES, 8, 8), torch.zeros(1, QUERIES, 7))
    with pytest.raises(ValueError, match="class_logits of layer 0"):
        crit(as_predictions(wrong_classes), targets)
    good = random_layer(1, seed=10)
    with pytest.raises(ValueError, match="class_logits of layer 0"):
        crit(as_predictions(good, [wrong_classes]), targets)
    with pytest.raises(ValueError, match=r"targets\[0\].labels"):
        crit(as_predictions(good), [block_instances([NUM_CLASSES])])
    with pytest.raises(ValueError, match="targets has 2 images"):
        crit(as_predictions(good), targets * 2)
