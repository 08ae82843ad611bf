"""Hugging Face universal-segmentation models (Mask2Former, EoMT) as castseg teachers.

`HFUniversalTeacher` wraps `Mask2FormerForUniversalSegmentation` or
`EomtForUniversalSegmentation` and returns castseg `Predictions` over the dataset's classes:

- images [B, 3, H, W] in [0, 1] are normalised with the model's image-processor statistics
  (read when loading, kept in `config_dict`), resized with their aspect ratio kept to fit
  `input_size` and padded bottom/right with the mean colour, as the processors do; the outputs
  are cropped back to the image's part of the canvas, so they stay aligned with the image grid.
  Without `input_size`, a Mask2Former image is resized as its processor's `size` says
  ({"shortest_edge", "longest_edge"}: aspect ratio kept; {"height", "width"}: that size), so
  the model sees images at its own test scale;
- the model's labels are mapped to the dataset's classes (`resolve_label_ids`): class c gets the
  logsumexp of the logits of the model labels mapped to it, and no-object the logsumexp of the
  model's no-object and of every unmapped model label. The softmax over the C+1 mapped logits is
  therefore exactly the model's distribution with the probabilities summed per dataset class, an
  unmapped model class counting as "no object of the dataset's classes";
- embeddings come from a `ProjectionHead` on the pixel decoder's stride-4 mask features
  (Mask2Former) or on the final patch tokens (EoMT); aux holds Mask2Former's per-layer
  predictions (EoMT's transformers implementation returns only the final layer).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    EomtConfig,
    EomtForUniversalSegmentation,
    Mask2FormerConfig,
    Mask2FormerForUniversalSegmentation,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.image_transforms import get_size_with_aspect_ratio

from castseg.models.encoder import IMAGENET_MEAN, IMAGENET_STD
from castseg.models.heads import ProjectionHead
from castseg.models.protocol import Normalisation
from castseg.models.teachers.hf_universal_processor import (
    checked_resize,
    processor_resize,
    unit_range_normalisation,
)
from castseg.models.teachers.label_mapping import (
    LabelSpec,
    label_assignment,
    map_class_logits,
    resolve_label_ids,
)
from castseg.models.teachers.sources import check_normalisation, load_pretrained, resolve_source
from castseg.structures import LayerPredictions, Predictions

MODEL_TYPES: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    "mask2former": (Mask2FormerConfig, Mask2FormerForUniversalSegmentation),
    "eomt": (EomtConfig, EomtForUniversalSegmentation),
}


def _crop(tensor: Tensor, valid: tuple[float, float]) -> Tensor:
    """The top-left `valid` fraction (of height, width) of [..., h, w], rounded up."""
    h = math.ceil(tensor.shape[-2] * valid[0] - 1e-6)
    w = math.ceil(tensor.shape[-1] * valid[1] - 1e-6)
    return tensor[..., :h, :w]


class HFUniversalTeacher(nn.Module):
    """A transformers universal-segmentation model returning `Predictions` over C classes (a
    `SegmentationModel`, `castseg.models.protocol`; no `embed`: it runs whole).

    Args:
        model: a Mask2Former or EoMT `...ForUniversalSegmentation`.
        class_names: the dataset's C class names, in class-index order.
        label_ids: [C] lists of model label ids per class (`resolve_label_ids`).
        input_size: (H, W) canvas the image is fitted into; None resizes as `resize` says, or
            keeps the image size without one (Mask2Former), or uses the model's fixed
            `image_size` (EoMT, which allows no other).
        trainable: parts whose parameters train (see `parts`); None: all but "backbone".
        proj_dim: D, the embedding dimension of the projection head.
        normalisation: {"mean", "std"} in [0, 1] pixel units (`unit_range_normalisation`);
            None: the ImageNet statistics.
        resize: the image processor's `size` ({"shortest_edge", "longest_edge"} or {"height",
            "width"}), used by Mask2Former when `input_size` is None.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        class_names: Sequence[str],
        label_ids: Sequence[Sequence[int]],
        *,
        input_size: Sequence[int] | None = None,
        trainable: Sequence[str] | None = None,
        proj_dim: int = 128,
        normalisation: Mapping[str, Sequence[float]] | None = None,
        resize: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        config = model.config
        if config.model_type not in MODEL_TYPES:
            raise ValueError(
                f"model type {config.model_type!r} is not supported, expected one of "
                f"{sorted(MODEL_TYPES)}"
            )
        if len(label_ids) != len(class_names) or not class_names:
            raise ValueError(
                f"need one label-id list per class: {len(class_names)} classes, "
                f"{len(label_ids)} lists"
            )
        self.model = model
        self.model_type = config.model_type
        self.class_names = list(class_names)
        self.label_ids = [sorted(int(i) for i in ids) for ids in label_ids]
        out_of_range = sorted({i for ids in self.label_ids for i in ids} - set(config.id2label))
        if out_of_range:
            raise ValueError(
                f"label ids {out_of_range} are not labels of the model (ids 0 … "
                f"{config.num_labels - 1})"
            )
        self.register_buffer(
            "assignment", label_assignment(self.label_ids, config.num_labels), persistent=False
        )
        self.input_size, self.size_divisor = self._input_geometry(input_size)
        self.resize = None if resize is None else checked_resize(resize)
        normalisation = normalisation or {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
        check_normalisation(dict(normalisation), "HFUniversalTeacher")
        self.normalisation = {k: [float(v) for v in normalisation[k]] for k in ("mean", "std")}
        self.register_buffer(
            "pixel_mean", torch.tensor(self.normalisation["mean"]).view(1, 3, 1, 1), False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(self.normalisation["std"]).view(1, 3, 1, 1), False
        )
        feature_dim = (
            config.mask_feature_size if self.model_type == "mask2former" else config.hidden_size
        )
        self.proj_dim = proj_dim
        self.head = ProjectionHead(feature_dim, feature_dim, proj_dim)
        parts = self.parts()
        if trainable is None:
            trainable = [name for name in parts if name != "backbone"]
        unknown = sorted(set(trainable) - set(parts))
        if unknown:
            raise ValueError(
                f"unknown trainable parts {unknown} for {self.model_type}, expected names from "
                f"{list(parts)}"
            )
        self.trainable = [name for name in parts if name in set(trainable)]
        for name, modules in parts.items():
            for param in (p for m in modules for p in m.parameters()):
                param.requires_grad_(name in self.trainable)
        self.train()

    def _input_geometry(
        self, input_size: Sequence[int] | None
    ) -> tuple[tuple[int, int] | None, int]:
        """(canvas or None, size divisor) of the model's input."""
        config = self.model.config
        if input_size is not None and (len(input_size) != 2 or min(input_size) < 1):
            raise ValueError(f"input_size must be (H, W) with positive integers, got {input_size}")
        size = None if input_size is None else (int(input_size[0]), int(input_size[1]))
        if self.model_type == "eomt":
            fixed = (config.image_size, config.image_size)
            if size not in (None, fixed):
                raise ValueError(
                    f"EoMT's position embeddings fix its input to image_size {fixed}, got "
                    f"input_size {size}"
                )
            return fixed, 1
        backbone = config.backbone_config
        return size, backbone.patch_size * 2 ** (len(backbone.depths) - 1)

    def parts(self) -> dict[str, list[nn.Module]]:
        """Named parts of the model: what `trainable` selects; "backbone" is the encoder group.

        Mask2Former: backbone (Swin), pixel_decoder, transformer_decoder, class_head, projection.
        EoMT: backbone (patch embedding and the ViT blocks before the queries join),
        query_blocks (queries, the last num_blocks ViT blocks, final norm), mask_head
        (upscaling and mask MLP), class_head, projection.
        """
        m = self.model
        if self.model_type == "mask2former":
            return {
                "backbone": [m.model.pixel_level_module.encoder],
                "pixel_decoder": [m.model.pixel_level_module.decoder],
                "transformer_decoder": [m.model.transformer_module],
                "class_head": [m.class_predictor],
                "projection": [self.head],
            }
        first_query_block = m.config.num_hidden_layers - m.config.num_blocks
        return {
            "backbone": [m.embeddings, *m.layers[:first_query_block]],
            "query_blocks": [m.query, *m.layers[first_query_block:], m.layernorm],
            "mask_head": [m.upscale_block, m.mask_head],
            "class_head": [m.class_predictor],
            "projection": [self.head],
        }

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by learning rate: "encoder" (the backbone) and "decoder" (the rest)."""
        parts = self.parts()
        rest = [
            p
            for name, mods in parts.items()
            if name != "backbone"
            for m in mods
            for p in m.parameters()
        ]
        return {"encoder": [p for m in parts["backbone"] for p in m.parameters()], "decoder": rest}

    def train(self, mode: bool = True) -> HFUniversalTeacher:
        """Sets the mode, keeping frozen parts in eval mode (no dropout or drop-path there)."""
        super().train(mode)
        for name, modules in self.parts().items():
            if name not in self.trainable:
                for module in modules:
                    module.eval()
        return self

    def _prepare(self, images: Tensor) -> tuple[Tensor, tuple[float, float]]:
        """Normalised, fitted and padded pixels [B, 3, H', W'] and the image's share of H', W'."""
        height, width = images.shape[-2:]
        pixels = (images - self.pixel_mean) / self.pixel_std
        if self.input_size is not None:
            canvas = self.input_size
            scale = min(canvas[0] / height, canvas[1] / width)
            fitted = (max(1, round(height * scale)), max(1, round(width * scale)))
        elif self.resize is not None and "height" in self.resize:
            canvas = fitted = (self.resize["height"], self.resize["width"])
        elif self.resize is not None:
            canvas = fitted = get_size_with_aspect_ratio(
                (height, width), self.resize["shortest_edge"], self.resize.get("longest_edge")
            )
        else:
            canvas = fitted = (height, width)
        if fitted != (height, width):
            pixels = F.interpolate(
                pixels, size=fitted, mode="bilinear", align_corners=False, antialias=True
            )
        d = self.size_divisor
        padded = (-(-canvas[0] // d) * d, -(-canvas[1] // d) * d)
        # zero after normalisation is the mean colour, the processors' padding value
        pixels = F.pad(pixels, (0, padded[1] - fitted[1], 0, padded[0] - fitted[0]))
        return pixels, (fitted[0] / padded[0], fitted[1] / padded[1])

    def forward(self, images: Tensor) -> Predictions:
        """Segment a batch.

        Args:
            images: [B, 3, H, W] RGB in [0, 1].

        Returns:
            Predictions with mask_logits [B, Q, h, w] (stride 4 of the model's input for
            Mask2Former, patch_size / 4 for EoMT, cropped to the image), class_logits
            [B, Q, C+1], embeddings [B, D, h', w'] with unit ℓ2 norm (h', w' = h, w for
            Mask2Former, the patch grid for EoMT), and Mask2Former's earlier layers in aux.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got shape {tuple(images.shape)}")
        pixels, valid = self._prepare(images)
        if self.model_type == "mask2former":
            out = self.model(pixel_values=pixels, output_auxiliary_logits=True)
            features = out.pixel_decoder_last_hidden_state
            layers = [
                (a["masks_queries_logits"], a["class_queries_logits"])
                for a in out.auxiliary_logits or []
            ]
        else:
            out = self.model(pixel_values=pixels)
            start = self.model.config.num_queries + self.model.embeddings.num_prefix_tokens
            tokens = out.last_hidden_state[:, start:, :].transpose(1, 2)
            features = tokens.reshape(*tokens.shape[:2], *self.model.grid_size)
            layers = []
        return Predictions(
            mask_logits=_crop(out.masks_queries_logits, valid),
            class_logits=map_class_logits(out.class_queries_logits, self.assignment),
            embeddings=self.head(_crop(features, valid)),
            aux=[
                LayerPredictions(_crop(masks, valid), map_class_logits(logits, self.assignment))
                for masks, logits in layers
            ],
        )

    @property
    def input_normalisation(self) -> Normalisation:
        """The image processor's statistics (`normalisation`)."""
        return {k: list(v) for k, v in self.normalisation.items()}

    def config_dict(self) -> dict[str, Any]:
        """Plain data that rebuilds this architecture with random weights (`build_hf_universal`)."""
        return {
            "architecture": "hf_universal",
            "num_classes": len(self.class_names),
            "class_names": list(self.class_names),
            "model_type": self.model_type,
            "model_config": self.model.config.to_dict(),
            "label_ids": [list(ids) for ids in self.label_ids],
            "input_size": None if self.input_size is None else list(self.input_size),
            "trainable": list(self.trainable),
            "proj_dim": self.proj_dim,
            "normalisation": {k: list(v) for k, v in self.normalisation.items()},
            "resize": None if self.resize is None else dict(self.resize),
        }

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        class_names: Sequence[str],
        *,
        label_map: Mapping[str, LabelSpec] | None = None,
        trainable: Sequence[str] | None = None,
        proj_dim: int = 128,
        input_size: Sequence[int] | None = None,
    ) -> HFUniversalTeacher:
        """Load pretrained weights from a hub id or a local directory (see the class for args).

        label_map: dataset class name → model label name(s) or id(s), for classes whose name
        differs from the model's (`resolve_label_ids`). Raises FileNotFoundError for a local
        path that does not exist, OSError naming the source when its config or weights cannot
        be loaded, WeightsMismatchError naming it when its weights do not all fit, and
        ValueError for another model type or classes without a model label.
        """
        source = resolve_source(model, "model")
        try:
            config = AutoConfig.from_pretrained(source)
        except OSError as err:
            raise OSError(f"cannot load the model config from {source!r}: {err}") from err
        if config.model_type not in MODEL_TYPES:
            raise ValueError(
                f"{model} is a {config.model_type!r} model; supported universal-segmentation "
                f"models are {sorted(MODEL_TYPES)}"
            )
        label_ids = resolve_label_ids(class_names, config.id2label, label_map)
        weights = load_pretrained(MODEL_TYPES[config.model_type][1], source, "model", config)
        return cls(
            weights,
            class_names,
            label_ids,
            input_size=input_size,
            trainable=trainable,
            proj_dim=proj_dim,
            normalisation=unit_range_normalisation(source),
            resize=processor_resize(source) if config.model_type == "mask2former" else None,
        )


def build_hf_universal(
    *,
    num_classes: int,
    class_names: Sequence[str],
    model_type: str,
    model_config: dict[str, Any],
    label_ids: Sequence[Sequence[int]],
    input_size: Sequence[int] | None = None,
    trainable: Sequence[str] | None = None,
    proj_dim: int = 128,
    normalisation: Mapping[str, Sequence[float]] | None = None,
    resize: Mapping[str, int] | None = None,
) -> HFUniversalTeacher:
    """Rebuild an `HFUniversalTeacher` from its `config_dict()` with random weights (no hub)."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} is not one of {sorted(MODEL_TYPES)}")
    if num_classes != len(class_names):
        raise ValueError(f"num_classes {num_classes} but {len(class_names)} class_names")
    config_class, model_class = MODEL_TYPES[model_type]
    model = model_class(config_class.from_dict(model_config))
    return HFUniversalTeacher(
        model,
        class_names,
        label_ids,
        input_size=input_size,
        trainable=trainable,
        proj_dim=proj_dim,
        normalisation=normalisation,
        resize=resize,
    )
