"""The GroundedSAM2 teacher: MM-Grounding-DINO boxes and class scores, SAM2 masks, one Predictions.

    images ─► detector (text: "person. rider. car.") ─► per-query class scores, boxes
           │                                              │ top K queries by max class score
           └► SAM2 image encoder ─► mask decoder(boxes) ─► mask_logits [B, K, h, w]
                      └► projection head ─► embeddings [B, D, h', w']

Each sub-model sees the batch at its own input size (torch resizing, so it runs on batched
tensors on any device) and with its own processor's normalisation. The detector's class scores
become class logits as `grounded_sam2_detector` says; SAM2 decodes its mask token 0 for each box
(`grounded_sam2_segmenter`). Masks are differentiable through SAM2's mask decoder and FPN neck,
class logits through the detector's decoder and class head (MM-Grounding-DINO's contrastive class
head is a scaled dot product of query and text features plus one learned bias: its only
parameter). The boxes prompting SAM2 are detached; the K boxes are also returned
(`Predictions.boxes`), so the set criterion's box L1 and GIoU against the targets' mask boxes
train the detector's box regression, as Grounding DINO is fine-tuned. There are no auxiliary
layers.

L_pxl reaches the masks: the embeddings are a projection head on SAM2's FPN neck output (the
stride-16 map the mask decoder attends to), and the neck is trainable by default
(`segmenter_neck`, 1×1 and top-down convolutions, 0.6M parameters in SAM2.1-L), so the
contrastive gradient changes the features every mask is decoded from. The Hiera trunk stays
frozen: the neck's backward needs only its inputs, not the trunk's activations
(`benchmarks/bench_teacher_memory.py`).

Memory: the boxes are decoded in checkpointed chunks of about `mask_chunk` (image, box) pairs
(`grounded_sam2_segmenter`). The frozen encoders' activations are transient but large (about
4 GiB per 518 × 1036 image at paper size, fp32, measured on CPU): the batch goes through the
whole teacher `image_chunk` images at a time (default 1), so that transient is one image's
whatever the batch, and only what backward needs accumulates over the batch. Both chunkings are
the same computation.

Build from pretrained weights with `GroundedSAM2Teacher.from_pretrained`; rebuild a saved one with
`build_grounded_sam2(**config_without_architecture)` followed by `load_state_dict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import MMGroundingDinoForObjectDetection, Sam2Model
from transformers.image_transforms import get_size_with_aspect_ratio

from castseg.models.heads import ProjectionHead
from castseg.models.protocol import Normalisation, common_normalisation
from castseg.models.teachers.grounded_sam2_detector import (
    PromptTokens,
    check_detector_settings,
    class_logits_from_scores,
    prompt_tokens,
    top_detections,
)
from castseg.models.teachers.grounded_sam2_loading import load_sub_models, rebuild_sub_models
from castseg.models.teachers.grounded_sam2_parts import (
    DEFAULT_TRAINABLE,
    PARTS,
    check_parts,
    parameters_by_part,
    part_modules,
)
from castseg.models.teachers.grounded_sam2_segmenter import (
    boxes_to_corners,
    decode_masks,
    segmenter_features,
    use_mask_token_0,
)
from castseg.models.teachers.prompts import ClassPrompts
from castseg.models.teachers.sam2_size import sam2_input_size
from castseg.models.teachers.sources import check_normalisation
from castseg.structures import Predictions

ARCHITECTURE = "grounded_sam2"
DEFAULT_MASK_CHUNK = 10  # (image, box) pairs per mask-decoder call (module doc, BENCHMARKS.md)
DEFAULT_IMAGE_CHUNK = 1  # images per pass through the sub-models (module doc, BENCHMARKS.md)


class GroundedSAM2Teacher(nn.Module):
    """MM-Grounding-DINO prompted with the class names, SAM2 prompted with its top boxes (a
    `SegmentationModel` and an `Embedder`, `castseg.models.protocol`).

    Args:
        detector: MM-Grounding-DINO with its detection heads.
        segmenter: SAM2; its config's image size is its input size.
        prompts: the classes' tokenised prompt (`tokenize_class_prompts`), or its chunks in
            class order (`chunk_class_prompts`) when it is longer than the detector's text;
            kept as buffers.
        num_boxes: K, the detector queries (highest max class score first) SAM2 segments.
        trainable: names of the parts (`grounded_sam2_parts.PARTS`) that train in stage 1;
            None for `DEFAULT_TRAINABLE`. The other parts are frozen and kept in eval mode.
        proj_dim: D, the embedding dimension of the projection head on SAM2's image embeddings.
        detector_size: (shortest edge, longest edge) the detector's input is resized to,
            keeping the aspect ratio, as its processor does.
        normalisation: {"detector": {"mean", "std"}, "segmenter": {"mean", "std"}} of the
            sub-models' processors, for [0, 1] RGB.
        mask_chunk: (image, box) pairs SAM2's mask decoder takes per call, at least one box
            per image (memory, not results).
        image_chunk: images of a batch that go through the sub-models together (memory, not
            results).
    """

    def __init__(
        self,
        detector: MMGroundingDinoForObjectDetection,
        segmenter: Sam2Model,
        prompts: ClassPrompts | Sequence[ClassPrompts],
        *,
        num_boxes: int = 100,
        trainable: Sequence[str] | None = None,
        proj_dim: int = 128,
        detector_size: Sequence[int] = (800, 1333),
        normalisation: dict[str, dict[str, list[float]]],
        mask_chunk: int = DEFAULT_MASK_CHUNK,
        image_chunk: int = DEFAULT_IMAGE_CHUNK,
    ) -> None:
        super().__init__()
        if mask_chunk < 1:
            raise ValueError(f"mask_chunk must be a positive number of boxes, got {mask_chunk}")
        if image_chunk < 1:
            raise ValueError(f"image_chunk must be a positive number of images, got {image_chunk}")
        chunks = [prompts] if isinstance(prompts, ClassPrompts) else list(prompts)
        check_detector_settings(detector, chunks, num_boxes, detector_size)
        self.detector = detector
        use_mask_token_0(segmenter)
        self.segmenter = segmenter
        self.mask_chunk = int(mask_chunk)
        self.image_chunk = int(image_chunk)
        hidden = segmenter.config.vision_config.fpn_hidden_size
        self.head = ProjectionHead(hidden, hidden, proj_dim)
        self.class_names = tuple(name for chunk in chunks for name in chunk.class_names)
        self.prompts = tuple(prompt for chunk in chunks for prompt in chunk.prompts)
        self.prompt_chunks = [len(chunk.class_names) for chunk in chunks]
        self.num_boxes = num_boxes
        self.proj_dim = proj_dim
        self.detector_size = (int(detector_size[0]), int(detector_size[1]))
        self.segmenter_size = sam2_input_size(segmenter.config)
        self.normalisation = {role: dict(normalisation[role]) for role in ("detector", "segmenter")}
        for role, stats in self.normalisation.items():
            check_normalisation(stats, f"the {role} normalisation")
            self.register_buffer(
                f"{role}_mean", torch.tensor(stats["mean"]).view(1, 3, 1, 1), persistent=False
            )
            self.register_buffer(
                f"{role}_std", torch.tensor(stats["std"]).view(1, 3, 1, 1), persistent=False
            )
        tokens = prompt_tokens(chunks)
        self.register_buffer("input_ids", tokens.input_ids)
        self.register_buffer("attention_mask", tokens.attention_mask)
        self.register_buffer("token_classes", tokens.token_classes)
        self.register_buffer("class_chunk", tokens.class_chunk, persistent=False)
        self.trainable = check_parts(DEFAULT_TRAINABLE if trainable is None else trainable)
        for part, parameters in parameters_by_part(self).items():
            for parameter in parameters:
                parameter.requires_grad_(part in self.trainable)
        self.train()

    @classmethod
    def from_pretrained(
        cls,
        detector: str,
        segmenter: str,
        class_names: Sequence[str],
        *,
        prompts: Sequence[str] | None = None,
        num_boxes: int = 100,
        trainable: Sequence[str] | None = None,
        proj_dim: int = 128,
        detector_size: Sequence[int] | None = None,
        segmenter_size: int | None = None,
        mask_chunk: int = DEFAULT_MASK_CHUNK,
        image_chunk: int = DEFAULT_IMAGE_CHUNK,
    ) -> GroundedSAM2Teacher:
        """Load both models, their processors' settings and the detector's tokenizer.

        Args:
            detector: hub id or local directory of an MM-Grounding-DINO model with its
                processor (tokenizer and image processor), e.g. `config.DEFAULT_DETECTOR`.
            segmenter: hub id or local directory of a SAM2 model with its image processor,
                e.g. `config.DEFAULT_SEGMENTER`; a SAM2 video checkpoint (the published layout)
                loads its image model (`sources.load_segmenter_config`).
            class_names: the dataset's category names in class-index order.
            prompts: per-class prompt overrides in class order; None uses the class names.
            detector_size: (shortest edge, longest edge); None for the processor's.
            segmenter_size: SAM2's square input size; None for the model's own (1024 for the
                released models). Another size rescales SAM2's feature maps (a multiple of 32
                for the Hiera models).
            num_boxes, trainable, proj_dim, mask_chunk, image_chunk: as in the constructor.

        Raises FileNotFoundError / ValueError naming the path for a missing directory or one
        that holds no (or the wrong kind of) model; OSError naming the source when transformers
        cannot load it.
        """
        loaded = load_sub_models(
            detector, segmenter, class_names, prompts, detector_size, segmenter_size
        )
        return cls(
            loaded.detector,
            loaded.segmenter,
            loaded.prompts,
            num_boxes=num_boxes,
            trainable=trainable,
            proj_dim=proj_dim,
            detector_size=loaded.detector_size,
            mask_chunk=mask_chunk,
            image_chunk=image_chunk,
            normalisation=loaded.normalisation,
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def forward(self, images: Tensor) -> Predictions:
        """Segment a batch.

        Args:
            images: [B, 3, H, W] RGB in [0, 1], any size.

        Returns:
            Predictions with mask_logits [B, K, h, w] (SAM2's low-resolution masks, h = w =
            segmenter_size / 4, covering the whole image), class_logits [B, K, C+1]
            (`class_logits_from_scores`), embeddings [B, D, h', w'] with unit ℓ2 norm (h' =
            w' = segmenter_size / 16) and boxes [B, K, 4] (normalised cx, cy, w, h), K =
            num_boxes.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got shape {tuple(images.shape)}")
        parts = [self._predict(part) for part in images.split(self.image_chunk)]
        if len(parts) == 1:
            return parts[0]
        return Predictions(
            mask_logits=torch.cat([part.mask_logits for part in parts]),
            class_logits=torch.cat([part.class_logits for part in parts]),
            embeddings=torch.cat([part.embeddings for part in parts]),
            boxes=torch.cat([part.boxes for part in parts]),
        )

    def _predict(self, images: Tensor) -> Predictions:
        """`forward` of images that go through the sub-models together."""
        height, width = int(images.shape[2]), int(images.shape[3])
        detector_hw = get_size_with_aspect_ratio((height, width), *self.detector_size)
        tokens = PromptTokens(
            self.input_ids, self.attention_mask, self.token_classes, self.class_chunk
        )
        scores, boxes = top_detections(
            self.detector, self._resized(images, detector_hw, "detector"), tokens, self.num_boxes
        )
        features = self._segmenter_features(images)
        corners = boxes_to_corners(boxes.detach(), self.segmenter_size)
        return Predictions(
            mask_logits=decode_masks(self.segmenter, features, corners, self.mask_chunk),
            class_logits=class_logits_from_scores(scores),
            embeddings=self.head(features[-1]),
            boxes=boxes,
        )

    def embed(self, images: Tensor) -> Tensor:
        """The `embeddings` of `forward(images)` alone: SAM2's image encoder and the projection
        head, without the detector and the mask decoder (what L_pxl needs of the strong view)."""
        return torch.cat(
            [
                self.head(self._segmenter_features(part)[-1])
                for part in images.split(self.image_chunk)
            ]
        )

    @property
    def input_normalisation(self) -> Normalisation | None:
        """The sub-models' statistics when both normalise with the same (the published models:
        ImageNet's), else None (`normalisation` has each one's)."""
        return common_normalisation([self.normalisation[role] for role in self.normalisation])

    def _segmenter_features(self, images: Tensor) -> list[Tensor]:
        """SAM2's three feature maps of `images` (`segmenter_features`)."""
        size = self.segmenter_size
        return segmenter_features(self.segmenter, self._resized(images, (size, size), "segmenter"))

    def _resized(self, images: Tensor, size: tuple[int, int], role: str) -> Tensor:
        """`images` resized to `size` (bilinear, antialiased) and normalised for `role`."""
        if tuple(images.shape[-2:]) != tuple(size):
            images = F.interpolate(
                images, size=size, mode="bilinear", align_corners=False, antialias=True
            )
        return (images - getattr(self, f"{role}_mean")) / getattr(self, f"{role}_std")

    def train(self, mode: bool = True) -> GroundedSAM2Teacher:
        """Train mode for the trainable parts; frozen parts stay in eval mode (no dropout)."""
        super().train(mode)
        for part in PARTS:
            if part not in self.trainable:
                for module in part_modules(self, part):
                    module.eval()
        for part in self.trainable:  # a trainable part inside a frozen one (the SAM2 neck)
            for module in part_modules(self, part):
                module.train(mode)
        return self

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by learning-rate group, each shared parameter once.

        "encoder": the parts frozen by default (image and text encoders, detector neck, SAM2
        prompt encoder); "decoder": the rest. The optimizer keeps the requires_grad ones.
        """
        groups: dict[str, list[nn.Parameter]] = {"encoder": [], "decoder": []}
        for part, parameters in parameters_by_part(self).items():
            groups["decoder" if part in DEFAULT_TRAINABLE else "encoder"].extend(parameters)
        return groups

    def config_dict(self) -> dict[str, Any]:
        """Keyword arguments (plus "architecture") of `build_grounded_sam2` for this model.

        Plain JSON data: both sub-models' configs, so rebuilding needs no hub access, and the
        prompt's token count, so the token buffers of the state_dict fit.
        """
        return {
            "architecture": ARCHITECTURE,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "prompts": list(self.prompts),
            "detector_config": self.detector.config.to_dict(),
            "segmenter_config": self.segmenter.config.to_dict(),
            "detector_size": list(self.detector_size),
            "segmenter_size": self.segmenter_size,
            "num_boxes": self.num_boxes,
            "trainable": list(self.trainable),
            "proj_dim": self.proj_dim,
            "mask_chunk": self.mask_chunk,
            "image_chunk": self.image_chunk,
            "text_length": int(self.input_ids.shape[1]),
            "prompt_chunks": list(self.prompt_chunks),
            "normalisation": {role: dict(stats) for role, stats in self.normalisation.items()},
        }


def build_grounded_sam2(
    *,
    num_classes: int,
    class_names: Sequence[str],
    prompts: Sequence[str],
    detector_config: dict[str, Any],
    segmenter_config: dict[str, Any],
    detector_size: Sequence[int],
    segmenter_size: int,
    num_boxes: int,
    trainable: Sequence[str],
    proj_dim: int,
    text_length: int,
    normalisation: dict[str, dict[str, list[float]]],
    mask_chunk: int = DEFAULT_MASK_CHUNK,
    image_chunk: int = DEFAULT_IMAGE_CHUNK,
    prompt_chunks: Sequence[int] | None = None,
) -> GroundedSAM2Teacher:
    """A teacher with random weights and zero prompt tokens, from `config_dict()` data.

    prompt_chunks: the number of classes of each prompt chunk, in order; None for one chunk.

    Load the saved state_dict afterwards: it holds the weights and the prompt's tokens.
    """
    rebuilt = rebuild_sub_models(
        num_classes=num_classes,
        class_names=class_names,
        prompts=prompts,
        detector_config=detector_config,
        segmenter_config=segmenter_config,
        detector_size=detector_size,
        segmenter_size=segmenter_size,
        text_length=text_length,
        normalisation=normalisation,
        prompt_chunks=prompt_chunks,
    )
    return GroundedSAM2Teacher(
        rebuilt.detector,
        rebuilt.segmenter,
        rebuilt.prompts,
        num_boxes=num_boxes,
        trainable=trainable,
        proj_dim=proj_dim,
        detector_size=rebuilt.detector_size,
        normalisation=rebuilt.normalisation,
        mask_chunk=mask_chunk,
        image_chunk=image_chunk,
    )
