"""The fused mask/class "pseudo probability" vector ỹ that drives negative sampling (§3.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from castseg.losses.precision import float32


def fused_pseudo_probabilities(
    mask_logits: Tensor, class_logits: Tensor, size: tuple[int, int]
) -> Tensor:
    """ỹ = normalize([P_m ; F_c]) for every pixel of the feature map.

    Args:
        mask_logits: [B, K, h, w] mask logits of the K queries.
        class_logits: [B, K, C+1] class logits, the last class is "no object".
        size: (h', w') of the embedding map the vectors are for.

    Returns:
        [B, h'*w', K+C+1]: P_m[b, :, p] (softmax over the K queries of the mask logits resized to
        (h', w')) followed by F_c[b, p, :] = Σ_k P_m[b, k, p] · P_c[b, k, :] (P_c = softmax over
        C+1), the concatenation ℓ2-normalised. Computed without gradient: ỹ only decides which
        negatives are drawn.
    """
    if mask_logits.dim() != 4:
        raise ValueError(f"mask_logits must be [B, K, h, w], got shape {tuple(mask_logits.shape)}")
    if class_logits.dim() != 3 or class_logits.shape[:2] != mask_logits.shape[:2]:
        raise ValueError(
            "class_logits must be [B, K, C+1] with the B and K of mask_logits "
            f"{tuple(mask_logits.shape)}, got {tuple(class_logits.shape)}"
        )
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (h', w') of positive ints, got {size}")
    with torch.no_grad(), float32(mask_logits):
        logits = mask_logits.detach().float()
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        p_mask = logits.flatten(2).softmax(dim=1)  # [B, K, N]
        p_class = class_logits.detach().float().softmax(dim=-1)  # [B, K, C+1]
        f_class = torch.einsum("bkn,bkc->bnc", p_mask, p_class)  # [B, N, C+1]
        fused = torch.cat([p_mask.transpose(1, 2), f_class], dim=-1)
        return F.normalize(fused, dim=-1)
