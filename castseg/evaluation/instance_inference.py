"""Turn one image's query predictions into scored instances (Mask2Former instance inference).

Every (query, class) pair is a candidate instance: its class probability comes from a softmax
over the C classes plus no-object, and its score is that probability times the mean mask
probability inside the binarised mask, so confident classes with blurry masks rank lower.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def instances_from_predictions(
    mask_logits: Tensor,
    class_logits: Tensor,
    image_size: tuple[int, int],
    *,
    top_k: int = 100,
    score_threshold: float = 0.0,
    per_query: bool = False,
) -> dict[str, Tensor]:
    """Select the top-scoring instances of one image.

    Args:
        mask_logits: [K, h, w] mask logits of the K queries.
        class_logits: [K, C+1] class logits; the last column is "no object".
        image_size: (H, W) the masks are bilinearly resized to before thresholding.
        top_k: how many (query, class) pairs to keep, ranked by class probability over the
            first C classes (at most K * C).
        score_threshold: instances whose final score is below it are dropped.
        per_query: rank each query once, with its most probable real class, instead of every
            (query, class) pair. Pseudo-labels need this: one object must not become several
            targets of different classes with the same mask.

    Returns:
        A dict, instances sorted by descending score:
        masks [N, H, W] bool (sigmoid of the resized logits > 0.5), labels [N] long in [0, C),
        scores [N] float (class probability * mean mask probability inside the mask),
        class_probs [N, C+1] float (the full softmax row of the query each instance comes from).
        Instances with an empty mask are dropped, so N <= top_k.
    """
    if mask_logits.dim() != 3 or class_logits.dim() != 2:
        raise ValueError(
            "expected mask_logits [K, h, w] and class_logits [K, C+1], got "
            f"{tuple(mask_logits.shape)} and {tuple(class_logits.shape)}"
        )
    num_queries, num_classes_plus_one = class_logits.shape
    if mask_logits.shape[0] != num_queries:
        raise ValueError(
            f"mask_logits has {mask_logits.shape[0]} queries but class_logits has {num_queries}"
        )
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    num_classes = num_classes_plus_one - 1

    class_probs = class_logits.float().softmax(dim=-1)  # [K, C+1]
    if per_query:
        best_probs, best_labels = class_probs[:, :num_classes].max(dim=1)  # [K]
        top_probs, queries = best_probs.topk(min(top_k, num_queries))
        labels = best_labels[queries]
    else:
        pair_probs = class_probs[:, :num_classes].flatten()  # [K * C], query-major
        top_probs, top_pairs = pair_probs.topk(min(top_k, pair_probs.numel()))
        queries = torch.div(top_pairs, num_classes, rounding_mode="floor")
        labels = top_pairs % num_classes

    # Only the selected queries are resized: K full-resolution masks can be large.
    mask_probs = F.interpolate(
        mask_logits[queries].float().unsqueeze(0),
        size=tuple(image_size),
        mode="bilinear",
        align_corners=False,
    )[0].sigmoid()  # [k, H, W]
    masks = mask_probs > 0.5
    areas = masks.flatten(1).sum(dim=1)
    mean_mask_prob = (mask_probs * masks).flatten(1).sum(dim=1) / areas.clamp(min=1)
    scores = top_probs * mean_mask_prob

    keep = (areas > 0) & (scores >= score_threshold)
    order = scores[keep].argsort(descending=True)
    return {
        "masks": masks[keep][order],
        "labels": labels[keep][order],
        "scores": scores[keep][order],
        "class_probs": class_probs[queries][keep][order],
    }
