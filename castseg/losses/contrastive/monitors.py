"""Monitors of the sampler and the embedding (paper §4.3): false-negative rate and margin."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from castseg.losses.contrastive.gathered_dot import gathered_dot
from castseg.losses.precision import float32
from castseg.structures import Instances


def instance_id_map(targets: list[Instances], size: tuple[int, int]) -> Tensor:
    """[B, h*w] long region ids at feature resolution: 0 background, k+1 for instance k, −1 ignore.

    Masks are resized with nearest interpolation; a later instance overwrites an earlier one.
    """
    maps = []
    for inst in targets:
        ids = torch.zeros(size, dtype=torch.long, device=inst.masks.device)
        if len(inst):
            masks = F.interpolate(inst.masks[None].float(), size=size, mode="nearest")[0] > 0.5
            # The highest instance number covering a pixel is the last one drawn there.
            numbers = torch.arange(1, len(inst) + 1, device=ids.device).view(-1, 1, 1)
            ids = (masks.long() * numbers).amax(0)
        if inst.ignore is not None:
            ignore = F.interpolate(inst.ignore[None, None].float(), size=size, mode="nearest")
            ids = torch.where(ignore[0, 0] > 0.5, -1, ids)
        maps.append(ids.flatten())
    return torch.stack(maps)


@torch.no_grad()
def sampling_monitors(
    instance_ids: Tensor,
    negatives: Tensor,
    z_weak: Tensor,
    z_strong: Tensor,
    valid: Tensor | None = None,
) -> dict[str, float]:
    """False-negative rate and empirical margin of one batch.

    Args:
        instance_ids: [B, N] region id per pixel (see `instance_id_map`); ids are per image, so a
            negative from another image is always a true negative. Anchors with id < 0 are skipped.
        negatives: [B, N, R] flat indices into the B·N pixels.
        z_weak, z_strong: [B, N, D] embeddings of the two views (normalised here).
        valid: [B, N] bool anchors with a positive; None means all.

    Returns:
        {"fnr": share of sampled negatives from the anchor's own region,
         "margin": Δ_emp = mean(1 − cos to negatives) − mean(1 − cos to positive),
         "neg_distance": the first mean, "pos_distance": the second}. NaN when no anchor counts.
    """
    batch, pixels, dim = z_weak.shape
    if instance_ids.shape != (batch, pixels) or negatives.shape[:2] != (batch, pixels):
        raise ValueError(
            f"instance_ids [B, N] and negatives [B, N, R] must match z_weak {tuple(z_weak.shape)}, "
            f"got {tuple(instance_ids.shape)} and {tuple(negatives.shape)}"
        )
    with float32(z_weak):
        return _monitors(instance_ids, negatives, z_weak.float(), z_strong.float(), valid)


def _monitors(
    instance_ids: Tensor, negatives: Tensor, z_weak: Tensor, z_strong: Tensor, valid: Tensor | None
) -> dict[str, float]:
    batch, pixels, dim = z_weak.shape
    keep = instance_ids.reshape(-1) >= 0
    if valid is not None:
        keep &= valid.reshape(-1)
    rows = keep.nonzero().squeeze(1)
    if rows.numel() == 0:
        nan = float("nan")
        return {"fnr": nan, "margin": nan, "neg_distance": nan, "pos_distance": nan}
    image_of = torch.arange(batch, device=rows.device).repeat_interleave(pixels)
    region = image_of * (int(instance_ids.max()) + 2) + instance_ids.reshape(-1)
    index = negatives.reshape(batch * pixels, -1)[rows]
    fnr = (region[index] == region[rows].unsqueeze(1)).float().mean()
    anchors = F.normalize(z_weak.float(), dim=-1).reshape(-1, dim)[rows]
    bank = F.normalize(z_strong.float(), dim=-1).reshape(-1, dim)
    neg_distance = (1.0 - gathered_dot(anchors, bank, index)).mean()
    pos_distance = (1.0 - (anchors * bank[rows]).sum(-1)).mean()
    return {
        "fnr": float(fnr),
        "margin": float(neg_distance - pos_distance),
        "neg_distance": float(neg_distance),
        "pos_distance": float(pos_distance),
    }
