"""The paper's teacher at full size with random weights: MM-Grounding-DINO-L + SAM2.1-L.

For timing and parameter counts (`castseg bench`) without downloading anything. The configs
repeat the released models' hyper-parameters: MM-Grounding-DINO-L (Swin-L backbone at 384 with
window 12, four backbone levels plus one extra, BERT-base text encoder, 6 + 6 layers, 900
queries), as transformers' conversion of the mmdetection checkpoints builds it, and SAM2.1
Hiera-L (144-d stem, 2-6-36-4 blocks, global attention in blocks 23, 33 and 43).

No tokenizer is available offline, so the prompt is a placeholder with the detector's text
layout ("[CLS] w. w. … [SEP]", one bert-base-uncased word per class): the shapes of a real prompt
of one-word class names, not its meaning.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import (
    BertConfig,
    MMGroundingDinoConfig,
    MMGroundingDinoForObjectDetection,
    Sam2Config,
    Sam2HieraDetConfig,
    Sam2Model,
    Sam2VisionConfig,
    SwinConfig,
)
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from castseg.models.teachers.grounded_sam2 import GroundedSAM2Teacher
from castseg.models.teachers.prompts import ClassPrompts, resolve_prompts
from castseg.models.teachers.sam2_size import sam2_config_for_size

# bert-base-uncased ids of [CLS], [SEP] and "." (the detector's phrase separator)
_CLS, _SEP, _PERIOD = 101, 102, 1012
_FIRST_WORD = 2000  # ordinary vocabulary words stand in for the class names


def paper_detector_config() -> MMGroundingDinoConfig:
    """MM-Grounding-DINO-L: Swin-L backbone, BERT-base text encoder, five feature levels."""
    swin = SwinConfig(
        image_size=384,
        window_size=12,
        embed_dim=192,
        depths=[2, 2, 18, 2],
        num_heads=[6, 12, 24, 48],
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    return MMGroundingDinoConfig(
        backbone_config=swin, text_config=BertConfig(), num_feature_levels=5
    )


def paper_segmenter_config() -> Sam2Config:
    """SAM2.1 Hiera-L at 1024 × 1024."""
    hiera = Sam2HieraDetConfig(
        hidden_size=144,
        embed_dim_per_stage=[144, 288, 576, 1152],
        num_attention_heads_per_stage=[2, 4, 8, 16],
        blocks_per_stage=[2, 6, 36, 4],
        global_attention_blocks=[23, 33, 43],
        window_positional_embedding_background_size=[7, 7],
        window_size_per_stage=[8, 4, 16, 8],
    )
    vision = Sam2VisionConfig(backbone_config=hiera, backbone_channel_list=[1152, 576, 288, 144])
    return Sam2Config(vision_config=vision)


def placeholder_prompts(
    class_names: Sequence[str], prompts: Sequence[str] | None = None
) -> ClassPrompts:
    """A prompt of one stand-in word per class with the real text layout (see module doc)."""
    resolved = resolve_prompts(class_names, prompts)
    ids = [_CLS]
    for index in range(len(resolved)):
        ids += [_FIRST_WORD + index, _PERIOD]
    ids.append(_SEP)
    token_classes = torch.zeros(len(resolved), len(ids), dtype=torch.bool)
    for index in range(len(resolved)):
        token_classes[index, 1 + 2 * index] = True
    return ClassPrompts(
        class_names=tuple(class_names),
        prompts=resolved,
        input_ids=torch.tensor(ids, dtype=torch.long),
        attention_mask=torch.ones(len(ids), dtype=torch.long),
        token_classes=token_classes,
    )


def build_paper_teacher(
    class_names: Sequence[str],
    *,
    prompts: Sequence[str] | None = None,
    num_boxes: int = 100,
    proj_dim: int = 128,
    trainable: Sequence[str] | None = None,
    detector_size: Sequence[int] = (800, 1333),
    segmenter_size: int = 1024,
) -> GroundedSAM2Teacher:
    """The paper's teacher (≈568M parameters) with random weights and a placeholder prompt.

    Inputs as the released processors prepare them by default: the detector at shortest edge
    800 (longest at most 1333), SAM2 at 1024 × 1024, both with the ImageNet mean and std.
    Smaller sizes run the same architecture cheaply (`benchmarks/gpu_check.py --dry-run`).
    """
    imagenet = {"mean": list(IMAGENET_DEFAULT_MEAN), "std": list(IMAGENET_DEFAULT_STD)}
    return GroundedSAM2Teacher(
        MMGroundingDinoForObjectDetection(paper_detector_config()),
        Sam2Model(sam2_config_for_size(paper_segmenter_config(), segmenter_size)),
        placeholder_prompts(class_names, prompts),
        num_boxes=num_boxes,
        trainable=trainable,
        proj_dim=proj_dim,
        detector_size=detector_size,
        normalisation={"detector": dict(imagenet), "segmenter": dict(imagenet)},
    )
