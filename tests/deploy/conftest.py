"""Models for the deployment tests whose predictions are known exactly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from castseg.structures import Predictions


class ColourSegmenter(nn.Module):
    """Query c's mask is colour channel c of the image (logit +10 where it is above 0.5, else
    -10); the class logits of query c are row c of `class_logits` [3, C+1], for every image."""

    def __init__(self, class_logits: Tensor) -> None:
        super().__init__()
        self.register_buffer("class_logits", class_logits.float())
        self.scale = nn.Parameter(torch.tensor(20.0))  # a parameter, as a real model has

    def forward(self, images: Tensor) -> Predictions:
        mask_logits = (images - 0.5) * self.scale  # [B, 3, H, W]
        class_logits = self.class_logits.expand(images.shape[0], -1, -1)
        return Predictions(mask_logits, class_logits)

    def config_dict(self) -> dict[str, Any]:
        return {"architecture": "colour_segmenter", "num_classes": self.class_logits.shape[1] - 1}


@pytest.fixture(scope="session")
def colour_segmenter() -> Callable[[int], ColourSegmenter]:
    """Factory: a ColourSegmenter over C classes whose query c predicts class c % C (logit 10)."""

    def build(num_classes: int = 3) -> ColourSegmenter:
        logits = torch.zeros(3, num_classes + 1)
        for query in range(3):
            logits[query, query % num_classes] = 10.0
        return ColourSegmenter(logits).eval()

    return build
