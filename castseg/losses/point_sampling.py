"""Point sampling for mask losses (PointRend / Mask2Former).

Mask losses are computed on a few thousand points instead of every pixel: the points are shared by
a prediction at feature resolution and a target at image resolution, because both are read at the
same normalised coordinates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def point_sample(inputs: Tensor, coords: Tensor) -> Tensor:
    """Bilinearly read `inputs` at normalised points.

    inputs: [N, C, H, W] float; coords: [N, P, 2] as (x, y) in [0, 1], (0, 0) the top-left corner
    of the image and (1, 1) the bottom-right one. Returns [N, C, P]. Points within half a pixel of
    the edge read the edge pixels rather than blending with zero padding, so a mask that fills
    the image reads 1 everywhere and a confident logit does not look uncertain at the border.
    """
    if inputs.dim() != 4 or coords.dim() != 3 or coords.shape[-1] != 2:
        raise ValueError(
            "point_sample expects inputs [N, C, H, W] and coords [N, P, 2], got "
            f"{tuple(inputs.shape)} and {tuple(coords.shape)}"
        )
    if inputs.shape[0] != coords.shape[0]:
        raise ValueError(
            f"inputs {tuple(inputs.shape)} and coords {tuple(coords.shape)} disagree on N"
        )
    grid = (2.0 * coords - 1.0).unsqueeze(2).to(inputs.dtype)
    return F.grid_sample(inputs, grid, padding_mode="border", align_corners=False).squeeze(3)


def valid_point_weights(ignore: Tensor | None, coords: Tensor) -> Tensor:
    """1 for points outside crowd regions, 0 for points whose bilinear read touches one.

    ignore: [H, W] bool or None; coords: [N, P, 2]. Returns [N, P] float.
    """
    if ignore is None:
        return coords.new_ones(coords.shape[:2])
    ignore_map = ignore[None, None].float().expand(coords.shape[0], 1, -1, -1)
    return (point_sample(ignore_map, coords)[:, 0] == 0).float()


def sample_uncertain_points(
    logits: Tensor,
    num_points: int,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pick points where the mask logits are least certain, plus uniform random points.

    `num_points * oversample_ratio` candidates are drawn uniformly; the
    `importance_sample_ratio * num_points` of them with the smallest |logit| are kept and the rest
    of the `num_points` are fresh uniform draws, so the loss also sees easy regions.

    logits: [N, 1, h, w] mask logits (read without gradient). Returns coords [N, num_points, 2] in
    [0, 1], (x, y).
    """
    if logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(f"logits must be [N, 1, h, w], got {tuple(logits.shape)}")
    if num_points < 1 or oversample_ratio < 1 or not 0 <= importance_sample_ratio <= 1:
        raise ValueError(
            "need num_points >= 1, oversample_ratio >= 1 and importance_sample_ratio in [0, 1], "
            f"got {num_points}, {oversample_ratio}, {importance_sample_ratio}"
        )
    n = logits.shape[0]
    num_candidates = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    device = logits.device
    candidates = torch.rand(n, num_candidates, 2, generator=generator, device=device)
    with torch.no_grad():
        uncertainty = -point_sample(logits.detach().float(), candidates).abs()[:, 0]
    top = uncertainty.topk(num_uncertain, dim=1).indices
    coords = candidates.gather(1, top[..., None].expand(-1, -1, 2))
    random = torch.rand(n, num_points - num_uncertain, 2, generator=generator, device=device)
    return torch.cat([coords, random], dim=1)
