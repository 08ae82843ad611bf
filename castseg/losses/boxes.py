"""Box losses of matched query/target pairs, as Grounding DINO is fine-tuned: L1 and GIoU.

Target boxes are the tight boxes of the target masks; both sides are normalised (cx, cy, w, h)
of the image. Used for models whose `Predictions` carry `boxes` (the GroundedSAM2 teacher).
"""

from __future__ import annotations

import torch
from torch import Tensor


def mask_boxes(masks: Tensor) -> Tensor:
    """Normalised (cx, cy, w, h) [M, 4] of the tight pixel boxes of masks [M, H, W].

    A box spans whole pixels: a mask covering columns x0 … x1 spans [x0, x1 + 1) of the width.
    An empty mask gives a zero box.
    """
    height, width = masks.shape[-2:]
    rows, cols = masks.any(dim=2), masks.any(dim=1)  # [M, H], [M, W]
    y = torch.arange(height, device=masks.device)
    x = torch.arange(width, device=masks.device)
    big = max(height, width)
    y0 = torch.where(rows, y, big).min(dim=1).values
    y1 = torch.where(rows, y, -1).max(dim=1).values + 1
    x0 = torch.where(cols, x, big).min(dim=1).values
    x1 = torch.where(cols, x, -1).max(dim=1).values + 1
    empty = ~rows.any(dim=1)
    corners = torch.stack([x0 / width, y0 / height, x1 / width, y1 / height], dim=-1).float()
    corners[empty] = 0.0
    return corners_to_centre(corners)


def centre_to_corners(boxes: Tensor) -> Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def corners_to_centre(boxes: Tensor) -> Tensor:
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def generalized_iou(a: Tensor, b: Tensor) -> Tensor:
    """GIoU of paired corner boxes a, b [N, 4] (x0, y0, x1, y1): IoU − (hull − union) / hull."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    low, high = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (high - low).clamp(min=0).prod(dim=1)
    union = area_a + area_b - inter
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(dim=1)
    eps = torch.finfo(a.dtype).eps
    return inter / union.clamp(min=eps) - (hull - union) / hull.clamp(min=eps)


def box_losses(
    boxes: Tensor, targets: list[Tensor], indices: list[tuple[Tensor, Tensor]], num_instances: int
) -> tuple[Tensor, Tensor]:
    """(L1, 1 − GIoU) of the matched pairs, each summed and divided by `num_instances`.

    boxes: [B, K, 4] predicted; targets: per image [M_b, 4]; indices: per image (query indices,
    target indices) of the matched pairs.
    """
    predicted = torch.cat([boxes[b, p.to(boxes.device)] for b, (p, _) in enumerate(indices)])
    if len(predicted) == 0:
        zero = boxes.sum() * 0
        return zero, zero.clone()
    wanted = torch.cat([targets[b][t.to(boxes.device)] for b, (_, t) in enumerate(indices)]).to(
        predicted.dtype
    )
    l1 = (predicted - wanted).abs().sum() / num_instances
    giou = generalized_iou(centre_to_corners(predicted.float()), centre_to_corners(wanted.float()))
    return l1, (1 - giou).sum() / num_instances
