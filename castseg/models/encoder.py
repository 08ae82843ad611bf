"""DINOv2 encoder of the student: a ViT whose intermediate layers feed the DPT neck.

The encoder wraps transformers' `Dinov2Backbone`, loaded from a hub id or a local directory
(pretrained; every weight must fit, `castseg.models.pretrained.load_checked`) or built from a
`Dinov2Config` (random init). It normalises [0, 1] RGB images with
the ImageNet statistics itself, so every caller passes the same kind of tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import Dinov2Backbone, Dinov2Config

from castseg.config.patch_grid import off_grid, round_up
from castseg.models.pretrained import load_checked
from castseg.models.protocol import Normalisation

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_LEVELS = 4  # the DPT neck reads four layers


def feature_stages(num_layers: int) -> list[str]:
    """Backbone stage names of four layers spread evenly up to the last one.

    12 layers → stage3, stage6, stage9, stage12 (the layers DPT and Depth Anything use).
    """
    if num_layers < NUM_LEVELS:
        raise ValueError(
            f"the encoder needs at least {NUM_LEVELS} layers for the DPT neck, "
            f"got num_hidden_layers = {num_layers}"
        )
    return [f"stage{round(num_layers * (i + 1) / NUM_LEVELS)}" for i in range(NUM_LEVELS)]


def _backbone_config(config: Dinov2Config) -> Dinov2Config:
    """A copy of `config` that returns four layer-normed token maps with the CLS token."""
    settings = config.to_dict()
    for derived in ("stage_names", "out_indices"):
        settings.pop(derived, None)
    settings.update(
        out_features=feature_stages(config.num_hidden_layers),
        # the DPT reassemble stage reads the CLS token and reshapes the patch tokens itself
        reshape_hidden_states=False,
        apply_layernorm=True,
    )
    return Dinov2Config.from_dict(settings)


class DinoEncoder(nn.Module):
    """DINOv2 ViT returning four evenly spread intermediate token maps.

    Args:
        config: architecture for random init; ignored when `pretrained` is given.
        pretrained: hub id or local directory of DINOv2 weights; its own config defines the
            architecture. WeightsMismatchError naming it when its weights do not all fit.
    """

    def __init__(
        self,
        config: Dinov2Config | None = None,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if pretrained is not None:
            config = _backbone_config(Dinov2Config.from_pretrained(pretrained))
            self.backbone = load_checked(
                Dinov2Backbone, pretrained, f"the encoder {pretrained!r}", config=config
            )
        elif config is not None:
            self.backbone = Dinov2Backbone(_backbone_config(config))
        else:
            raise ValueError("DinoEncoder needs a Dinov2Config or a pretrained hub id / directory")
        self.register_buffer(
            "pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False
        )

    @property
    def normalisation(self) -> Normalisation:
        """The ImageNet statistics the encoder normalises its [0, 1] RGB input with."""
        return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}

    @property
    def hidden_size(self) -> int:
        return self.backbone.config.hidden_size

    @property
    def patch_size(self) -> int:
        return self.backbone.config.patch_size

    def patch_grid(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of the patch grid for an image of `height` × `width`; raises if not divisible."""
        p = self.patch_size
        if off_grid((height, width), p):
            padded = f"{round_up(height, p)}x{round_up(width, p)}"
            raise ValueError(
                f"image height and width must be multiples of the patch size {p}, got image shape "
                f"{height}x{width} (resize or pad, e.g. to {padded})"
            )
        return height // p, width // p

    def forward(self, images: Tensor) -> tuple[list[Tensor], tuple[int, int]]:
        """Encode images.

        Args:
            images: [B, 3, H, W] RGB in [0, 1], H and W multiples of the patch size.

        Returns:
            token maps: four tensors [B, 1 + h*w, E], CLS token first, shallow to deep;
            the patch grid (h, w) = (H / patch, W / patch).
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got shape {tuple(images.shape)}")
        grid = self.patch_grid(images.shape[2], images.shape[3])
        pixels = (images - self.pixel_mean) / self.pixel_std
        return list(self.backbone(pixels).feature_maps), grid
