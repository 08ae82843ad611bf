"""Projection head: per-pixel embeddings for the pixel-wise contrastive loss L_pxl."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """Two-layer 1x1-conv MLP (conv → GroupNorm → ReLU → conv) with ℓ2-normalised output.

    GroupNorm rather than BatchNorm keeps a pixel's embedding independent of the rest of the
    batch, which holds the weak and the strong view of other images.

    Args:
        in_dim: channels of the input feature map.
        hidden_dim: channels of the hidden layer.
        out_dim: embedding dimension D.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int = 128) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_dim, hidden_dim, kernel_size=1, bias=False),
            nn.GroupNorm(math.gcd(32, hidden_dim), hidden_dim),
            nn.ReLU(),
            nn.Conv2d(hidden_dim, out_dim, kernel_size=1),
        )

    def forward(self, features: Tensor) -> Tensor:
        """features: [B, in_dim, h, w] → embeddings [B, out_dim, h, w], unit ℓ2 norm per pixel."""
        return F.normalize(self.layers(features), dim=1)
