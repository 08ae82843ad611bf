"""The pixel-wise NT-Xent L_pxl of §3.2 and its margin-hinge variant (Table 10)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from castseg.losses.contrastive.gathered_dot import gathered_dot
from castseg.losses.precision import float32


def pixel_contrastive_loss(
    z_weak: Tensor,
    z_strong: Tensor,
    negatives: Tensor,
    temperature: float,
    valid: Tensor | None = None,
    margin: float | None = None,
) -> Tensor:
    """L_pxl between the weak and the strong view of the same images.

    Args:
        z_weak: [B, N, D] anchor embeddings (weak view); ℓ2-normalised here.
        z_strong: [B, N, D] strong-view embeddings at the same scene points; z_strong[b, p] is
            the positive of z_weak[b, p]. ℓ2-normalised here.
        negatives: [B, N, R] flat indices into the B·N rows of z_strong (from `sample_negatives`).
        temperature: T > 0.
        valid: [B, N] bool, anchors that have a positive (e.g. inside the strong view's crop);
            None means all. Invalid anchors are left out of the mean.
        margin: None for NT-Xent; a float m selects the hinge variant
            mean_r max(0, m − cos⁺ + cos⁻_r), on cosine similarities (T is not used there).

    Returns:
        Scalar: −(1/|valid|) Σ log exp(s⁺) / (exp(s⁺) + Σ_r exp(s⁻_r)), with
        s⁺ = ⟨z_weak[b,p], z_strong[b,p]⟩/T and s⁻_r = ⟨z_weak[b,p], z_strong.flat[n_r]⟩/T.
        Zero (still attached to the graph) when no anchor is valid. Computed in float32, also
        under autocast.
    """
    _check(z_weak, z_strong, negatives, temperature, valid)
    with float32(z_weak):
        return _loss(z_weak.float(), z_strong.float(), negatives, temperature, valid, margin)


def _loss(
    z_weak: Tensor,
    z_strong: Tensor,
    negatives: Tensor,
    temperature: float,
    valid: Tensor | None,
    margin: float | None,
) -> Tensor:
    batch, pixels, dim = z_weak.shape
    anchors = F.normalize(z_weak, dim=-1).reshape(batch * pixels, dim)
    bank = F.normalize(z_strong, dim=-1).reshape(batch * pixels, dim)
    index = negatives.reshape(batch * pixels, -1)
    if valid is not None:
        keep = valid.reshape(-1).nonzero().squeeze(1)
        if keep.numel() == 0:
            return (z_weak.sum() + z_strong.sum()) * 0.0
        positives_bank = bank[keep]
        anchors, index = anchors[keep], index[keep]
    else:
        positives_bank = bank
    cos_pos = (anchors * positives_bank).sum(-1)  # [M]
    cos_neg = gathered_dot(anchors, bank, index)  # [M, R]
    if margin is not None:
        return (margin - cos_pos.unsqueeze(1) + cos_neg).clamp(min=0.0).mean()
    logits = torch.cat([cos_pos.unsqueeze(1), cos_neg], dim=1) / temperature
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def _check(
    z_weak: Tensor,
    z_strong: Tensor,
    negatives: Tensor,
    temperature: float,
    valid: Tensor | None,
) -> None:
    if z_weak.dim() != 3 or z_weak.shape != z_strong.shape:
        raise ValueError(
            "z_weak and z_strong must both be [B, N, D] of one shape, got "
            f"{tuple(z_weak.shape)} and {tuple(z_strong.shape)}"
        )
    if negatives.dim() != 3 or negatives.shape[:2] != z_weak.shape[:2]:
        raise ValueError(
            f"negatives must be [B, N, R] with B, N of z_weak {tuple(z_weak.shape)}, "
            f"got {tuple(negatives.shape)}"
        )
    if negatives.shape[2] < 1:
        raise ValueError(f"negatives must hold R >= 1 per anchor, got {tuple(negatives.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if valid is not None and valid.shape != z_weak.shape[:2]:
        raise ValueError(
            f"valid must be [B, N] = {tuple(z_weak.shape[:2])}, got {tuple(valid.shape)}"
        )
