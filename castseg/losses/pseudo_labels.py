"""Turning teacher predictions into pseudo-label targets for the semi-supervised loss."""

from __future__ import annotations

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import Tensor

from castseg.structures import Instances


def suppress_duplicates(masks: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy mask NMS: indices of the instances kept, highest score first.

    masks: [M, H, W] bool; scores: [M]. An instance is dropped when its mask IoU (pycocotools)
    with an already kept, higher-scoring instance exceeds `iou_threshold`.
    """
    order = scores.argsort(descending=True)
    if masks.shape[0] < 2:
        return order
    planes = np.asfortranarray(masks[order].permute(1, 2, 0).cpu().numpy().astype(np.uint8))
    rles = mask_utils.encode(planes)
    iou = mask_utils.iou(rles, rles, [0] * len(rles))
    kept: list[int] = []
    for i in range(len(rles)):
        if all(iou[i, j] <= iou_threshold for j in kept):
            kept.append(i)
    return order[torch.as_tensor(kept, dtype=torch.long)]


def filter_pseudo_labels(
    masks: Tensor,
    scores: Tensor,
    class_probs: Tensor,
    *,
    threshold: float = 0.3,
    mask_threshold: float = 0.5,
    nms_iou: float | None = None,
) -> Instances:
    """Keep confident teacher instances of one image as binary pseudo-label targets.

    masks: [M, H, W] foreground probabilities in [0, 1]; scores: [M] instance confidences;
    class_probs: [M, C+1] class distribution with no-object last. An instance survives when its
    score is >= `threshold` and its mask, binarised at probability >= `mask_threshold`, is not
    empty. With `nms_iou`, duplicates are then removed by `suppress_duplicates` (an object
    must not become two targets of the set loss). Labels are the argmax over the C real classes.
    Returns the survivors, by descending score, with their scores and class_probs.
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
    keep = ((scores >= threshold) & binary.flatten(1).any(1)).nonzero().squeeze(1)
    if nms_iou is not None:
        keep = keep[suppress_duplicates(binary[keep], scores[keep], nms_iou)]
    class_probs = class_probs.detach()[keep]
    return Instances(
        masks=binary[keep],
        labels=class_probs[:, :-1].argmax(1),
        scores=scores.detach()[keep],
        class_probs=class_probs,
    )
