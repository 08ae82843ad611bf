"""Box losses of the teacher's detector, against direct computations."""

import torch

from castseg.losses.boxes import box_losses, generalized_iou, mask_boxes
from castseg.losses.matcher import HungarianMatcher
from castseg.losses.set_criterion import SetCriterion
from castseg.structures import Instances, Predictions


def test_mask_boxes_are_the_tight_pixel_boxes():
    masks = torch.zeros(3, 10, 20, dtype=torch.bool)
    masks[0, 2:5, 4:12] = True  # rows 2-4, columns 4-11
    masks[1, 9, 19] = True  # one pixel in the corner
    boxes = mask_boxes(masks)  # the third mask is empty
    torch.testing.assert_close(boxes[0], torch.tensor([8 / 20, 3.5 / 10, 8 / 20, 3 / 10]))
    torch.testing.assert_close(boxes[1], torch.tensor([19.5 / 20, 9.5 / 10, 1 / 20, 1 / 10]))
    torch.testing.assert_close(boxes[2], torch.zeros(4))


def test_generalized_iou_of_known_pairs():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0]])
    # overlap 1, union 7, hull 9: 1/7 − 2/9; identical: 1; disjoint: 0 − (3 − 2) / 3
    expected = torch.tensor([1 / 7 - 2 / 9, 1.0, -1 / 3])
    torch.testing.assert_close(generalized_iou(a, b), expected)


def test_box_losses_of_matched_pairs_only():
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1], [0.3, 0.3, 0.2, 0.4]]])
    boxes.requires_grad_(True)
    targets = [torch.tensor([[0.3, 0.3, 0.2, 0.4], [0.5, 0.6, 0.2, 0.2]])]
    indices = [(torch.tensor([2, 0]), torch.tensor([0, 1]))]  # query 1 is unmatched
    l1, giou = box_losses(boxes, targets, indices, num_instances=2)
    torch.testing.assert_close(l1, torch.tensor(0.1 / 2))  # only the pair 0 ↔ 1 differs, by 0.1
    # pair 0 ↔ 1: boxes 0.4-0.6 × 0.4-0.6 and 0.4-0.6 × 0.5-0.7: IoU 0.5 / 1.5, hull = union
    torch.testing.assert_close(giou, torch.tensor((1 - 1 / 3) / 2))
    (l1 + giou).backward()
    assert boxes.grad[0, 1].abs().sum() == 0 and boxes.grad[0, 0].abs().sum() > 0
    empty = box_losses(boxes, [torch.zeros(0, 4)], [(torch.zeros(0, dtype=torch.long),) * 2], 1)
    assert all(term.item() == 0 for term in empty)


def test_the_criterion_adds_box_terms_for_predictions_with_boxes():
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, 2:6, 2:10] = True
    masks[1, 8:16, 4:8] = True
    target = Instances(masks, torch.tensor([0, 1]))
    mask_logits = torch.full((1, 3, 16, 16), -20.0)
    mask_logits[0, :2] = (masks.float() * 2 - 1) * 20  # queries 0, 1 are the targets
    class_logits = torch.full((1, 3, 3), -10.0)
    class_logits[0, 0, 0] = class_logits[0, 1, 1] = class_logits[0, 2, 2] = 10.0
    exact = mask_boxes(masks)
    boxes = torch.stack([exact[0], exact[1] + torch.tensor([0.05, 0.0, 0.0, 0.0]), exact[0]])
    criterion = SetCriterion(2, HungarianMatcher(num_points=64), num_points=64)

    torch.manual_seed(0)  # the same sampled points in both calls
    plain = criterion(Predictions(mask_logits, class_logits), [target])
    assert "loss_bbox" not in plain and "loss_giou" not in plain
    torch.manual_seed(0)
    terms = criterion(Predictions(mask_logits, class_logits, boxes=boxes[None]), [target])
    torch.testing.assert_close(terms["loss_bbox"], torch.tensor(0.05 / 2))
    assert 0 < terms["loss_giou"] < 0.5
    for key in ("loss_class", "loss_mask", "loss_dice"):
        torch.testing.assert_close(terms[key], plain[key])
