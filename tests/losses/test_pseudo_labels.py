import numpy as np
import pytest
import torch

from castseg.losses.pseudo_labels import filter_pseudo_labels, suppress_duplicates


def teacher_output():
    """Four instances on a 4 x 4 image: confident, low-score, empty after binarising, borderline."""
    masks = torch.zeros(4, 4, 4)
    masks[0, :2] = 0.9
    masks[1, 2:] = 0.8
    masks[2] = 0.4  # below mask_threshold everywhere
    masks[3, :, :1] = 0.5  # exactly at mask_threshold
    scores = torch.tensor([0.9, 0.1, 0.8, 0.3])
    class_probs = torch.tensor(
        [
            [0.7, 0.2, 0.1],
            [0.1, 0.8, 0.1],
            [0.6, 0.3, 0.1],
            [0.1, 0.3, 0.6],  # no-object most likely, but the label is a real class
        ]
    )
    return masks, scores, class_probs


def test_keeps_confident_non_empty_instances():
    masks, scores, class_probs = teacher_output()
    out = filter_pseudo_labels(masks, scores, class_probs, threshold=0.3, mask_threshold=0.5)
    assert len(out) == 2
    assert out.masks.dtype == torch.bool
    assert torch.equal(out.masks[0], masks[0] >= 0.5)
    assert torch.equal(out.masks[1], masks[3] >= 0.5)
    assert out.labels.tolist() == [0, 1]
    torch.testing.assert_close(out.scores, scores[[0, 3]])
    torch.testing.assert_close(out.class_probs, class_probs[[0, 3]])


def test_thresholds_are_respected():
    masks, scores, class_probs = teacher_output()
    out = filter_pseudo_labels(masks, scores, class_probs, threshold=0.05, mask_threshold=0.35)
    assert out.scores.tolist() == pytest.approx([0.9, 0.1, 0.8, 0.3])
    out = filter_pseudo_labels(masks, scores, class_probs, threshold=0.95)
    assert len(out) == 0
    assert out.masks.shape == (0, 4, 4)


def test_no_instances():
    out = filter_pseudo_labels(torch.zeros(0, 3, 5), torch.zeros(0), torch.zeros(0, 4))
    assert len(out) == 0 and out.image_size == (3, 5)


def test_bad_inputs_raise():
    masks, scores, class_probs = teacher_output()
    with pytest.raises(ValueError, match="probabilities"):
        filter_pseudo_labels(masks * 10 - 5, scores, class_probs)
    with pytest.raises(ValueError, match="scores"):
        filter_pseudo_labels(masks, scores[:3], class_probs)
    with pytest.raises(ValueError, match="class_probs"):
        filter_pseudo_labels(masks, scores, class_probs[:, :1])
    with pytest.raises(ValueError, match="masks"):
        filter_pseudo_labels(masks[0], scores, class_probs)


def test_duplicates_are_suppressed_by_mask_iou():
    from pycocotools import mask as mask_utils

    masks = torch.zeros(3, 10, 10, dtype=torch.bool)
    masks[0, :5, :5] = True
    masks[1, :5, :4] = True  # IoU 0.8 with mask 0
    masks[2, 5:, 5:] = True
    scores = torch.tensor([0.6, 0.9, 0.5])
    keep = suppress_duplicates(masks, scores, iou_threshold=0.5)
    assert keep.tolist() == [1, 2]
    rle = mask_utils.encode(np.asfortranarray(masks[:2].permute(1, 2, 0).numpy().astype(np.uint8)))
    assert mask_utils.iou(rle[:1], rle[1:], [0])[0, 0] == pytest.approx(0.8)
    assert suppress_duplicates(masks, scores, iou_threshold=0.9).tolist() == [1, 0, 2]

    probs = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1]])
    kept = filter_pseudo_labels(masks.float(), scores, probs, threshold=0.3, nms_iou=0.5)
    assert kept.scores.tolist() == pytest.approx([0.9, 0.5]) and kept.labels.tolist() == [1, 0]
