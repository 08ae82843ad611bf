"""The SAM2 half of the GroundedSAM2 teacher: image features, and masks decoded for box prompts.

One mask path for training, pseudo-labelling and evaluation: SAM2's mask token 0 (the single-mask
output for a box prompt). SAM2.1's `dynamic_multimask_via_stability` is switched off
(`use_mask_token_0`): it would swap, in eval mode only, an unstable token-0 mask for one of tokens
1–3 chosen by the IoU head, and neither those tokens nor the IoU head are trained by the
objective.

Memory: SAM2's mask decoder repeats the image embeddings, their positional embedding and both
high-resolution maps once per box. `decode_masks` decodes the boxes in chunks of about
`mask_chunk` (image, box) pairs, the batch's images together; with grad enabled each chunk runs
under activation checkpointing, so a training step keeps one chunk's decoder activations at a
time instead of B · K boxes' worth. The chunking is the same computation.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint
from transformers import Sam2Model


def use_mask_token_0(segmenter: Sam2Model) -> None:
    """Token 0 in train and eval mode alike (see the module doc); the config records it."""
    segmenter.config.mask_decoder_config.dynamic_multimask_via_stability = False
    segmenter.mask_decoder.dynamic_multimask_via_stability = False


def boxes_to_corners(boxes: Tensor, size: int) -> Tensor:
    """Normalised (cx, cy, w, h) boxes [..., 4] → (x1, y1, x2, y2) pixels of a size × size image."""
    cx, cy, w, h = boxes.unbind(-1)
    corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    return corners.clamp(0.0, 1.0) * size


def segmenter_features(segmenter: Sam2Model, pixels: Tensor) -> list[Tensor]:
    """SAM2's three feature maps [B, C, h, w] (strides 4, 8, 16) of its input `pixels` (resized
    and normalised) as `Sam2Model.forward` builds them: the stride-4 and -8 maps projected for
    the mask decoder, the no-memory embedding added to the stride-16 one."""
    maps = list(segmenter.get_image_features(pixels, return_dict=True).fpn_hidden_states)
    maps[-1] = maps[-1] + segmenter.no_memory_embedding
    return [
        feature.permute(1, 2, 0).reshape(pixels.shape[0], -1, height, width)
        for feature, (height, width) in zip(maps, segmenter.backbone_feature_sizes, strict=True)
    ]


def decode_masks(
    segmenter: Sam2Model, features: list[Tensor], corners: Tensor, mask_chunk: int
) -> Tensor:
    """Mask logits [B, K, h, w] of mask token 0 for the boxes `corners` [B, K, 4] (pixels),
    decoded from `segmenter_features` in chunks (see the module doc)."""
    chunks = corners.split(max(1, mask_chunk // corners.shape[0]), dim=1)
    # One chunk is one call: checkpointing it would recompute all K boxes' activations.
    checkpointed = torch.is_grad_enabled() and len(chunks) > 1
    masks = [
        checkpoint(_decode_boxes, segmenter, *features, part, use_reentrant=False)
        if checkpointed
        else _decode_boxes(segmenter, *features, part)
        for part in chunks
    ]
    return torch.cat(masks, dim=1)


def _decode_boxes(
    segmenter: Sam2Model, stride4: Tensor, stride8: Tensor, stride16: Tensor, boxes: Tensor
) -> Tensor:
    segmented = segmenter(
        image_embeddings=[stride4, stride8, stride16],
        input_boxes=boxes,
        multimask_output=False,
    )
    return segmented.pred_masks[:, :, 0]
