"""Turning teacher predictions into pseudo-label targets for the semi-supervised loss."""

from __future__ import annotations

from torch import Tensor

from castseg.structures import Instances


def filter_pseudo_labels(
    masks: Tensor,
    scores: Tensor,
    class_probs: Tensor,
    *,
    threshold: float = 0.3,
    mask_threshold: float = 0.5,
) -> Instances:
    """Keep confident teacher instances of one image as binary pseudo-label targets.

    masks: [M, H, W] foreground probabilities in [0, 1]; scores: [M] instance confidences;
    class_probs: [M, C+1] class distribution with no-object last. An instance survives when its
    score is >= `threshold` and its mask, binarised at probability >= `mask_threshold`, is not
    empty. Labels are the argmax over the C real classes. Returns the survivors with their
    scores and class_probs.
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be [M, H, W], got {tuple(masks.shape)}")
    m = masks.shape[0]
    if scores.shape != (m,):
        raise ValueError(f"scores must be [M] with M = {m}, got {tuple(scores.shape)}")
    if class_probs.dim() != 2 or class_probs.shape[0] != m or class_probs.shape[1] < 2:
        raise ValueError(
            f"class_probs must be [M, C+1] with M = {m} and C >= 1, got {tuple(class_probs.shape)}"
        )
    if m and (masks.min() < 0 or masks.max() > 1):
        raise ValueError(
            "masks must be probabilities in [0, 1] (apply sigmoid to logits first), got range "
            f"[{masks.min().item():.3g}, {masks.max().item():.3g}]"
        )

    binary = masks.detach() >= mask_threshold
    keep = (scores >= threshold) & binary.flatten(1).any(1)
    class_probs = class_probs.detach()[keep]
    return Instances(
        masks=binary[keep],
        labels=class_probs[:, :-1].argmax(1),
        scores=scores.detach()[keep],
        class_probs=class_probs,
    )
