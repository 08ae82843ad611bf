"""Pixel correspondence between the weak and the strong view of an image.

The positive of a weak feature cell in the pixel-contrastive loss is the strong embedding at the
same scene point. `correspondence_grid` finds that point for every cell, in the normalised
coordinates `F.grid_sample(..., align_corners=False)` reads:

    z_pos = F.grid_sample(z_strong, grid, align_corners=False, padding_mode="border")

gives z_pos [B, D, h, w], the strong embedding of each weak cell; cells where `valid` is False
fall outside the strong crop and have no positive.
"""

from __future__ import annotations

import torch
from kornia.geometry.linalg import transform_points
from torch import Tensor


def correspondence_grid(
    weak_to_strong: Tensor, weak_size: tuple[int, int], feature_size: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Where each weak feature cell lies in the strong view.

    weak_to_strong: [B, 3, 3] maps weak pixel coordinates (x, y, 1) to strong ones (as returned by
    `StrongView`, whose output has the weak size). weak_size: (H, W) of both views in pixels.
    feature_size: (h, w) of the feature maps of both views, each cell covering H/h x W/w pixels
    with its centre at pixel ((j + 0.5) W/w - 0.5, (i + 0.5) H/h - 0.5).

    Returns grid [B, h, w, 2], the (x, y) of each weak cell centre in the strong view in [-1, 1]
    coordinates with align_corners=False (resolution independent, so it indexes the strong feature
    map as well as the strong image), and valid [B, h, w] bool, True where that point lies inside
    the strong image.
    """
    if weak_to_strong.dim() != 3 or weak_to_strong.shape[1:] != (3, 3):
        raise ValueError(f"weak_to_strong must be [B, 3, 3], got {tuple(weak_to_strong.shape)}")
    (H, W), (h, w) = weak_size, feature_size
    dtype, device = weak_to_strong.dtype, weak_to_strong.device
    ys = (torch.arange(h, dtype=dtype, device=device) + 0.5) * (H / h) - 0.5
    xs = (torch.arange(w, dtype=dtype, device=device) + 0.5) * (W / w) - 0.5
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    centres = torch.stack([x, y], dim=-1).reshape(1, h * w, 2).expand(len(weak_to_strong), -1, -1)

    strong = transform_points(weak_to_strong, centres)  # [B, h*w, 2] strong pixel (x, y)
    extent = torch.tensor([W, H], dtype=dtype, device=device)
    valid = ((strong >= -0.5) & (strong <= extent - 0.5)).all(dim=-1)
    grid = (2 * strong + 1) / extent - 1
    return grid.reshape(-1, h, w, 2), valid.reshape(-1, h, w)
