"""The GroundedSAM2 teacher: MM-Grounding-DINO boxes and class scores, SAM2 masks, one Predictions.

    images ─► detector (text: "person. rider. car.") ─► per-query class scores, boxes
           │                                              │ top K queries by max class score
           └► SAM2 image encoder ─► mask decoder(boxes) ─► mask_logits [B, K, h, w]
                      └► projection head ─► embeddings [B, D, h', w']

Each sub-model sees the batch at its own input size (torch resizing, so it runs on batched
tensors on any device) and with its own processor's normalisation. The detector's class scores
s_c = mean over class c's tokens of sigmoid(token logit) (see `prompts`) become a distribution
over the C classes plus no-object (`class_logits_from_scores`):

    p(no object) = 1 − max_c s_c            p(c) = max_c s_c · s_c / Σ_j s_j

so 1 − p(no object) is the detector's own box score and a query whose class scores are all near
0 is almost surely no object. Masks are differentiable through SAM2's mask decoder and FPN neck,
class logits through the detector's decoder and class head (MM-Grounding-DINO's contrastive class
head is a scaled dot product of query and text features plus one learned bias: its only
parameter). The boxes prompting SAM2 are detached; the K boxes are also returned
(`Predictions.boxes`), so the set criterion's box L1 and GIoU against the targets' mask boxes
train the detector's box regression, as Grounding DINO is fine-tuned. There are no auxiliary
layers.

One mask path for training, pseudo-labelling and evaluation: SAM2's mask token 0 (the single-mask
output for a box prompt). SAM2.1's `dynamic_multimask_via_stability` is switched off: it would
swap, in eval mode only, an unstable token-0 mask for one of tokens 1–3 chosen by the IoU head,
and neither those tokens nor the IoU head are trained by the objective.

L_pxl reaches the masks: the embeddings are a projection head on SAM2's FPN neck output (the
stride-16 map the mask decoder attends to), and the neck is trainable by default
(`segmenter_neck`, 1×1 and top-down convolutions, 0.6M parameters in SAM2.1-L), so the
contrastive gradient changes the features every mask is decoded from. The Hiera trunk stays
frozen: the neck's backward needs only its inputs, not the trunk's activations
(`benchmarks/bench_teacher_memory.py`).

Memory: SAM2's mask decoder repeats the image embeddings, their positional embedding and both
high-resolution maps once per box. The boxes are decoded in chunks of about `mask_chunk`
(image, box) pairs, the batch's images together; with grad enabled each chunk runs under
activation checkpointing, so a training step keeps one chunk's decoder activations at a time
instead of B · K boxes' worth. The frozen encoders' activations are transient but large (about
4 GiB per 518 × 1036 image at paper size, fp32, measured on CPU): the batch goes through the
whole teacher `image_chunk` images at a time (default 1), so that transient is one image's
whatever the batch, and only what backward needs accumulates over the batch. Both chunkings are
the same computation.

Build from pretrained weights with `GroundedSAM2Teacher.from_pretrained`; rebuild a saved one with
`build_grounded_sam2(**config_without_architecture)` followed by `load_state_dict`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from transformers import (
    AutoTokenizer,
    MMGroundingDinoConfig,
    MMGroundingDinoForObjectDetection,
    Sam2Config,
    Sam2Model,
)
from transformers.image_transforms import get_size_with_aspect_ratio

from castseg.models.heads import ProjectionHead
from castseg.models.teachers.grounded_sam2_parts import (
    DEFAULT_TRAINABLE,
    PARTS,
    check_parts,
    parameters_by_part,
    part_modules,
)
from castseg.models.teachers.prompts import (
    ClassPrompts,
    chunk_class_prompts,
    class_scores_from_token_logits,
    resolve_prompts,
)
from castseg.models.teachers.sam2_size import sam2_config_for_size, sam2_input_size
from castseg.models.teachers.sources import (
    check_normalisation,
    load_config,
    load_pretrained,
    load_segmenter_config,
    processor_normalisation,
    processor_settings,
    resolve_source,
)
from castseg.structures import Predictions

DEFAULT_DETECTOR = "openmmlab-community/mm_grounding_dino_large_all"
DEFAULT_SEGMENTER = "facebook/sam2.1-hiera-large"
ARCHITECTURE = "grounded_sam2"
DEFAULT_MASK_CHUNK = 10  # (image, box) pairs per mask-decoder call (module doc, BENCHMARKS.md)
DEFAULT_IMAGE_CHUNK = 1  # images per pass through the sub-models (module doc, BENCHMARKS.md)
_PROBABILITY_FLOOR = 1e-6  # keeps log-probabilities finite


def class_logits_from_scores(scores: Tensor) -> Tensor:
    """Class logits [..., C+1] (no-object last) from independent per-class scores [..., C].

    softmax(logits) = (f · s_1/Σs, …, f · s_C/Σs, 1 − f) with f = max_c s_c: the detector's box
    score is the probability of an object, split over the classes in proportion to their scores.
    """
    scores = scores.clamp(_PROBABILITY_FLOOR, 1.0)
    foreground = scores.max(dim=-1, keepdim=True).values
    log_classes = foreground.log() + scores.log() - scores.sum(dim=-1, keepdim=True).log()
    log_background = (1.0 - foreground).clamp(min=_PROBABILITY_FLOOR).log()
    return torch.cat([log_classes, log_background], dim=-1)


def boxes_to_corners(boxes: Tensor, size: int) -> Tensor:
    """Normalised (cx, cy, w, h) boxes [..., 4] → (x1, y1, x2, y2) pixels of a size × size image."""
    cx, cy, w, h = boxes.unbind(-1)
    corners = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    return corners.clamp(0.0, 1.0) * size


class GroundedSAM2Teacher(nn.Module):
    """MM-Grounding-DINO prompted with the class names, SAM2 prompted with its top boxes.

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
        num_queries = detector.config.num_queries
        if not 1 <= num_boxes <= num_queries:
            raise ValueError(
                f"num_boxes must be between 1 and the detector's {num_queries} queries, "
                f"got {num_boxes}"
            )
        if len(detector_size) != 2 or not 0 < detector_size[0] <= detector_size[1]:
            raise ValueError(
                "detector_size must be (shortest edge, longest edge) with 0 < shortest <= "
                f"longest, got {tuple(detector_size)}"
            )
        chunks = [prompts] if isinstance(prompts, ClassPrompts) else list(prompts)
        longest = max(chunk.num_tokens for chunk in chunks)
        if longest > detector.config.max_text_len:
            raise ValueError(
                f"a prompt has {longest} tokens, more than the detector's "
                f"{detector.config.max_text_len}"
            )
        self.detector = detector
        # Token 0 in train and eval mode alike (see the module doc); the config records it.
        segmenter.config.mask_decoder_config.dynamic_multimask_via_stability = False
        segmenter.mask_decoder.dynamic_multimask_via_stability = False
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
        # One text per chunk, padded to the longest (attention mask 0, as the processor pads);
        # token_classes[c] marks class c's tokens in its chunk's text, class_chunk[c] the chunk.
        input_ids = torch.zeros(len(chunks), longest, dtype=torch.long)
        attention_mask = torch.zeros(len(chunks), longest, dtype=torch.long)
        token_classes = torch.zeros(len(self.class_names), longest, dtype=torch.bool)
        class_chunk, first = [], 0
        for index, chunk in enumerate(chunks):
            input_ids[index, : chunk.num_tokens] = chunk.input_ids
            attention_mask[index, : chunk.num_tokens] = chunk.attention_mask
            size = len(chunk.class_names)
            token_classes[first : first + size, : chunk.num_tokens] = chunk.token_classes
            class_chunk += [index] * size
            first += size
        self.register_buffer("input_ids", input_ids)
        self.register_buffer("attention_mask", attention_mask)
        self.register_buffer("token_classes", token_classes)
        self.register_buffer("class_chunk", torch.tensor(class_chunk), persistent=False)
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
                processor (tokenizer and image processor), e.g. `DEFAULT_DETECTOR`.
            segmenter: hub id or local directory of a SAM2 model with its image processor,
                e.g. `DEFAULT_SEGMENTER`; a SAM2 video checkpoint (the published layout) loads
                its image model (`sources.load_segmenter_config`).
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
        detector_source = resolve_source(detector, "detector")
        segmenter_source = resolve_source(segmenter, "segmenter")
        detector_config = load_config(detector_source, "detector", MMGroundingDinoConfig)
        segmenter_config = load_segmenter_config(segmenter_source)
        if segmenter_size is not None:
            segmenter_config = sam2_config_for_size(segmenter_config, segmenter_size)

        # The tokenizer is needed here only: the prompt's tokens are kept as buffers.
        try:
            tokenizer = AutoTokenizer.from_pretrained(detector_source)
        except OSError as err:
            raise OSError(
                f"cannot load the detector tokenizer from {detector_source!r}: {err}"
            ) from err
        detector_settings = processor_settings(detector_source, "detector")
        segmenter_settings = processor_settings(segmenter_source, "segmenter")
        if detector_size is None:
            size = detector_settings.get("size") or {}
            if "shortest_edge" not in size or "longest_edge" not in size:
                raise ValueError(
                    f"the detector image processor of {detector_source!r} has no "
                    f"shortest_edge / longest_edge size ({size}); pass detector_size"
                )
            detector_size = (size["shortest_edge"], size["longest_edge"])
        class_prompts = chunk_class_prompts(
            tokenizer, class_names, prompts, max_tokens=detector_config.max_text_len
        )
        return cls(
            load_pretrained(
                MMGroundingDinoForObjectDetection, detector_source, "detector", detector_config
            ),
            load_pretrained(Sam2Model, segmenter_source, "segmenter", segmenter_config),
            class_prompts,
            num_boxes=num_boxes,
            trainable=trainable,
            proj_dim=proj_dim,
            detector_size=detector_size,
            mask_chunk=mask_chunk,
            image_chunk=image_chunk,
            normalisation={
                "detector": processor_normalisation(detector_settings, detector_source, "detector"),
                "segmenter": processor_normalisation(
                    segmenter_settings, segmenter_source, "segmenter"
                ),
            },
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
            segmenter_size / 4, covering the whole image), class_logits [B, K, C+1] (see the
            module doc) and embeddings [B, D, h', w'] with unit ℓ2 norm (h' = w' =
            segmenter_size / 16) and boxes [B, K, 4] (normalised cx, cy, w, h), K = num_boxes.
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
        batch = images.shape[0]
        height, width = int(images.shape[2]), int(images.shape[3])
        detector_hw = get_size_with_aspect_ratio((height, width), *self.detector_size)
        pixels = self._resized(images, detector_hw, "detector")
        # One detector run per prompt chunk; its queries score only the chunk's classes.
        scores, boxes = [], []
        for index in range(self.input_ids.shape[0]):
            detected = self.detector(
                pixel_values=pixels,
                input_ids=self.input_ids[index : index + 1].expand(batch, -1),
                attention_mask=self.attention_mask[index : index + 1].expand(batch, -1),
            )
            in_chunk = self.token_classes & (self.class_chunk == index).unsqueeze(1)
            scores.append(class_scores_from_token_logits(detected.logits, in_chunk))
            boxes.append(detected.pred_boxes)
        scores, boxes = torch.cat(scores, dim=1), torch.cat(boxes, dim=1)  # [B, chunks · Q, ·]
        top = scores.detach().max(dim=-1).values.topk(self.num_boxes, dim=1).indices  # [B, K]
        scores = scores.gather(1, top.unsqueeze(-1).expand(-1, -1, scores.shape[-1]))
        boxes = boxes.gather(1, top.unsqueeze(-1).expand(-1, -1, 4))  # [B, K, 4] cx, cy, w, h

        features = self._segmenter_features(images)
        corners = boxes_to_corners(boxes.detach(), self.segmenter_size)
        chunks = corners.split(max(1, self.mask_chunk // batch), dim=1)
        # One chunk is one call: checkpointing it would recompute all K boxes' activations.
        checkpointed = torch.is_grad_enabled() and len(chunks) > 1
        masks = [self._decode(*features, part, checkpointed) for part in chunks]
        return Predictions(
            mask_logits=torch.cat(masks, dim=1),
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

    def _segmenter_features(self, images: Tensor) -> list[Tensor]:
        """SAM2's three feature maps [B, C, h, w] (strides 4, 8, 16) as `Sam2Model.forward`
        builds them: the stride-4 and -8 maps projected for the mask decoder, the no-memory
        embedding added to the stride-16 one."""
        size = self.segmenter_size
        pixels = self._resized(images, (size, size), "segmenter")
        maps = list(self.segmenter.get_image_features(pixels, return_dict=True).fpn_hidden_states)
        maps[-1] = maps[-1] + self.segmenter.no_memory_embedding
        return [
            feature.permute(1, 2, 0).reshape(images.shape[0], -1, height, width)
            for feature, (height, width) in zip(
                maps, self.segmenter.backbone_feature_sizes, strict=True
            )
        ]

    def _decode(
        self, stride4: Tensor, stride8: Tensor, stride16: Tensor, boxes: Tensor, checkpointed: bool
    ) -> Tensor:
        """Mask logits [B, k, h, w] of SAM2's mask token 0 for boxes [B, k, 4] (pixels), under
        activation checkpointing if `checkpointed`."""
        if checkpointed:
            return checkpoint(
                self._decode_boxes, stride4, stride8, stride16, boxes, use_reentrant=False
            )
        return self._decode_boxes(stride4, stride8, stride16, boxes)

    def _decode_boxes(
        self, stride4: Tensor, stride8: Tensor, stride16: Tensor, boxes: Tensor
    ) -> Tensor:
        segmented = self.segmenter(
            image_embeddings=[stride4, stride8, stride16],
            input_boxes=boxes,
            multimask_output=False,
        )
        return segmented.pred_masks[:, :, 0]

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
    if num_classes != len(class_names):
        raise ValueError(
            f"num_classes is {num_classes} but there are {len(class_names)} class names"
        )
    if text_length < 1:
        raise ValueError(f"text_length must be a positive token count, got {text_length}")
    resolved = resolve_prompts(class_names, prompts)
    sizes = [num_classes] if prompt_chunks is None else [int(n) for n in prompt_chunks]
    if sum(sizes) != num_classes or min(sizes) < 1:
        raise ValueError(f"prompt_chunks {sizes} must split the {num_classes} classes")
    bounds = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    chunks = [
        ClassPrompts.empty(class_names[a:b], resolved[a:b], text_length)
        for a, b in itertools.pairwise(bounds)
    ]
    segmenter = Sam2Config.from_dict(segmenter_config)
    return GroundedSAM2Teacher(
        MMGroundingDinoForObjectDetection(MMGroundingDinoConfig.from_dict(detector_config)),
        Sam2Model(sam2_config_for_size(segmenter, segmenter_size)),
        chunks,
        num_boxes=num_boxes,
        trainable=trainable,
        proj_dim=proj_dim,
        detector_size=detector_size,
        normalisation=normalisation,
        mask_chunk=mask_chunk,
        image_chunk=image_chunk,
    )
