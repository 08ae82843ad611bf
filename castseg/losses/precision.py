"""Losses, matching costs and sampler scores in float32 under mixed precision.

Lightning's `bf16-mixed` and `16-mixed` run the forward pass under `torch.autocast`, which would
also run the matmuls of a loss in 16 bits. As in Mask2Former, the loss code leaves autocast and
casts its inputs to float32: `with float32(tensor): ...`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def float32(like: Tensor) -> torch.autocast:
    """Autocast off on `like`'s device type for the enclosed code (cast its inputs with
    `.float()`); harmless where autocast was not on."""
    return torch.autocast(like.device.type, enabled=False)
