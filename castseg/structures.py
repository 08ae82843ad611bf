"""The data structures every model, loss and stage of castseg agrees on.

`Predictions` is what the student and every teacher return; `Instances` is the target of one
image (ground truth or pseudo-labels). Shapes are checked on construction, so a wrong tensor is
reported where it is made rather than deep inside a loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class LayerPredictions:
    """Mask and class predictions of one decoder layer.

    mask_logits: [B, K, h, w]; class_logits: [B, K, C+1], the last class is "no object".
    """

    mask_logits: Tensor
    class_logits: Tensor

    def __post_init__(self) -> None:
        if self.mask_logits.dim() != 4:
            raise ValueError(
                f"mask_logits must be [B, K, h, w], got shape {tuple(self.mask_logits.shape)}"
            )
        if self.class_logits.dim() != 3:
            raise ValueError(
                f"class_logits must be [B, K, C+1], got shape {tuple(self.class_logits.shape)}"
            )
        if self.mask_logits.shape[:2] != self.class_logits.shape[:2]:
            raise ValueError(
                "mask_logits [B, K, h, w] and class_logits [B, K, C+1] disagree on B or K: "
                f"{tuple(self.mask_logits.shape)} vs {tuple(self.class_logits.shape)}"
            )
        if self.class_logits.shape[-1] < 2:
            raise ValueError(
                "class_logits needs at least one class plus no-object, got C+1 = "
                f"{self.class_logits.shape[-1]}"
            )

    @property
    def num_queries(self) -> int:
        return self.mask_logits.shape[1]

    @property
    def num_classes(self) -> int:
        """C, the number of real classes (without no-object)."""
        return self.class_logits.shape[-1] - 1


@dataclass
class Predictions(LayerPredictions):
    """Output of a model for a batch: the final layer, pixel embeddings and auxiliary layers.

    embeddings: [B, D, h', w'] pixel embeddings for the contrastive loss (None when the model has
    no projection head). aux: predictions of the earlier decoder layers, first to last.
    boxes: [B, K, 4] the queries' boxes, normalised (cx, cy, w, h) of the image, for models that
    regress boxes (the GroundedSAM2 teacher's detector); the set criterion adds box losses.
    """

    embeddings: Tensor | None = None
    aux: list[LayerPredictions] = field(default_factory=list)
    boxes: Tensor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.embeddings is not None and (
            self.embeddings.dim() != 4 or self.embeddings.shape[0] != self.mask_logits.shape[0]
        ):
            raise ValueError(
                "embeddings must be [B, D, h', w'] with the same B as mask_logits "
                f"{tuple(self.mask_logits.shape)}, got {tuple(self.embeddings.shape)}"
            )
        if self.boxes is not None and self.boxes.shape != (*self.mask_logits.shape[:2], 4):
            raise ValueError(
                f"boxes must be [B, K, 4] with B, K of mask_logits {tuple(self.mask_logits.shape)}"
                f", got {tuple(self.boxes.shape)}"
            )

    def layers(self) -> list[LayerPredictions]:
        """Auxiliary layers followed by the final layer."""
        return [*self.aux, LayerPredictions(self.mask_logits, self.class_logits)]

    def narrow(self, start: int, length: int) -> Predictions:
        """The predictions of images start … start+length-1 of the batch."""
        return Predictions(
            self.mask_logits.narrow(0, start, length),
            self.class_logits.narrow(0, start, length),
            None if self.embeddings is None else self.embeddings.narrow(0, start, length),
            [
                LayerPredictions(
                    a.mask_logits.narrow(0, start, length), a.class_logits.narrow(0, start, length)
                )
                for a in self.aux
            ],
            None if self.boxes is None else self.boxes.narrow(0, start, length),
        )

    def detach(self) -> Predictions:
        return Predictions(
            self.mask_logits.detach(),
            self.class_logits.detach(),
            None if self.embeddings is None else self.embeddings.detach(),
            [LayerPredictions(a.mask_logits.detach(), a.class_logits.detach()) for a in self.aux],
            None if self.boxes is None else self.boxes.detach(),
        )


@dataclass
class Instances:
    """Instance targets of one image.

    masks: [M, H, W] bool; labels: [M] long in [0, C). For pseudo-labels also scores: [M] float
    and class_probs: [M, C+1]. ignore: [H, W] bool marks pixels the mask loss skips (crowd regions).
    """

    masks: Tensor
    labels: Tensor
    scores: Tensor | None = None
    class_probs: Tensor | None = None
    ignore: Tensor | None = None

    def __post_init__(self) -> None:
        if self.masks.dim() != 3:
            raise ValueError(f"masks must be [M, H, W], got shape {tuple(self.masks.shape)}")
        self.masks = self.masks.bool()
        self.labels = self.labels.long()
        m = self.masks.shape[0]
        if self.labels.shape != (m,):
            raise ValueError(
                f"labels must be [M] with M = {m} masks, got shape {tuple(self.labels.shape)}"
            )
        if self.scores is not None and self.scores.shape != (m,):
            raise ValueError(f"scores must be [M] with M = {m}, got {tuple(self.scores.shape)}")
        if self.class_probs is not None and (
            self.class_probs.dim() != 2 or self.class_probs.shape[0] != m
        ):
            raise ValueError(
                f"class_probs must be [M, C+1] with M = {m}, got {tuple(self.class_probs.shape)}"
            )
        if self.ignore is not None and self.ignore.shape != self.masks.shape[1:]:
            raise ValueError(
                f"ignore must be [H, W] = {tuple(self.masks.shape[1:])}, "
                f"got {tuple(self.ignore.shape)}"
            )

    def __len__(self) -> int:
        return self.masks.shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @classmethod
    def empty(cls, height: int, width: int) -> Instances:
        return cls(
            torch.zeros(0, height, width, dtype=torch.bool), torch.zeros(0, dtype=torch.long)
        )

    def to(self, device: torch.device | str) -> Instances:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return Instances(
            self.masks.to(device),
            self.labels.to(device),
            move(self.scores),
            move(self.class_probs),
            move(self.ignore),
        )
