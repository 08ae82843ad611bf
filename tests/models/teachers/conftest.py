"""Tiny random foundation models in local directories laid out like their hub repositories.

`tiny_tokenizer_dir`: a WordPiece vocabulary and BERT tokenizer laid out like bert-base-uncased
where MM-Grounding-DINO needs it ([CLS] 101, [SEP] 102, "." 1012, "?" 1029: the detector's
special tokens are these ids).

`tiny_detector_dir`: MM-Grounding-DINO (Swin + BERT, d_model 32) laid out like
openmmlab-community/mm_grounding_dino_large_all: transformers' conversion script for the
mmdetection checkpoints saves `MMGroundingDinoForObjectDetection` (config.json, model_type
"mm-grounding-dino") and a `GroundingDinoProcessor` of a GroundingDino image processor
(preprocessor_config.json, shortest / longest edge) and a `BertTokenizer` (tokenizer_config.json,
special_tokens_map.json, vocab.txt, ...), which is what `save_pretrained` of both writes here.

`tiny_segmenter_dir`: SAM2 (Hiera, 64 × 64 input) laid out like facebook/sam2.1-hiera-large
(and facebook/sam2-hiera-large): the transformers weights are a **video** model, config.json
with model_type "sam2_video" and architectures ["Sam2VideoModel"], memory modules included;
processor_config.json is `{"point_pad_value": -10, "processor_class": "Sam2VideoProcessor",
"target_size": 1024}` (target size scaled to 64 here); preprocessor_config.json holds the image
processor (Sam2ImageProcessorFast: resize to a square, rescale, normalise).

Processors use a non-ImageNet mean and std so tests see that they are read.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import (
    BertConfig,
    BertTokenizer,
    EomtConfig,
    EomtForUniversalSegmentation,
    GroundingDinoImageProcessorPil,
    GroundingDinoProcessor,
    MMGroundingDinoConfig,
    MMGroundingDinoForObjectDetection,
    Sam2HieraDetConfig,
    Sam2MaskDecoderConfig,
    Sam2PromptEncoderConfig,
    Sam2VideoConfig,
    Sam2VideoModel,
    Sam2VisionConfig,
    SwinConfig,
)

# bert-base-uncased positions of the tokens MM-Grounding-DINO treats as special
BERT_SPECIAL_IDS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}
BERT_SEPARATOR_IDS = {1012: ".", 1029: "?"}
WORDS = ["person", "rider", "car", "motor", "##cycle", "##bike", "bi", "traffic", "light", "bus"]
DETECTOR_MEAN, DETECTOR_STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
SEGMENTER_MEAN, SEGMENTER_STD = [0.45, 0.5, 0.55], [0.3, 0.2, 0.1]
DETECTOR_SIZE = {"shortest_edge": 48, "longest_edge": 80}
NUM_QUERIES = 12
SEGMENTER_SIZE = 64


def tiny_vocabulary() -> list[str]:
    """WordPiece vocabulary: bert-base-uncased ids for the special tokens, then WORDS."""
    fixed = {**BERT_SPECIAL_IDS, **BERT_SEPARATOR_IDS}
    size = max(fixed) + 1
    vocab = [fixed.get(i, f"[unused{i}]") for i in range(size)]
    return vocab + WORDS


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved BertTokenizer over `tiny_vocabulary()` (vocab.txt kept beside it)."""
    path = tmp_path_factory.mktemp("tiny_tokenizer")
    (path / "vocab.txt").write_text("\n".join(tiny_vocabulary()) + "\n")
    BertTokenizer(vocab=str(path / "vocab.txt")).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_detector_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer_dir: Path) -> Path:
    """A random MM-Grounding-DINO with its GroundingDinoProcessor, in a local directory."""
    torch.manual_seed(0)
    swin = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_features=["stage2", "stage3", "stage4"],
    )
    bert = BertConfig(
        vocab_size=len(tiny_vocabulary()),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    config = MMGroundingDinoConfig(
        backbone_config=swin,
        text_config=bert,
        # 64 channels: the neck's GroupNorm(32, d_model) then has 2 per group, so the 1 × 1
        # stride-64 map of a small image also normalises when the teacher takes one image at a
        # time (the real model's 256 channels have 8).
        d_model=64,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=2,
        decoder_n_points=2,
        num_queries=NUM_QUERIES,
        num_feature_levels=4,
        max_text_len=32,
    )
    path = tmp_path_factory.mktemp("tiny_mm_grounding_dino")
    MMGroundingDinoForObjectDetection(config).save_pretrained(path)
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessorPil(
            size=DETECTOR_SIZE, image_mean=DETECTOR_MEAN, image_std=DETECTOR_STD
        ),
        tokenizer=BertTokenizer.from_pretrained(tiny_tokenizer_dir),
    )
    processor.save_pretrained(path)
    return path


def tiny_sam2_parts() -> dict:
    """The vision, prompt-encoder and mask-decoder configs of the tiny SAM2 (64 × 64 input)."""
    hiera = Sam2HieraDetConfig(
        hidden_size=16,
        embed_dim_per_stage=[16, 32, 64, 128],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        blocks_per_stage=[1, 1, 2, 1],
        global_attention_blocks=[3],  # not the first block of a stage, as in the real models
        window_positional_embedding_background_size=[4, 4],
        window_size_per_stage=[4, 4, 4, 4],
        image_size=[SEGMENTER_SIZE, SEGMENTER_SIZE],
    )
    features = [[SEGMENTER_SIZE // s, SEGMENTER_SIZE // s] for s in (4, 8, 16)]
    return {
        "vision_config": Sam2VisionConfig(
            backbone_config=hiera,
            backbone_channel_list=[128, 64, 32, 16],
            backbone_feature_sizes=features,
            fpn_hidden_size=32,
        ),
        "prompt_encoder_config": Sam2PromptEncoderConfig(
            hidden_size=32, image_size=SEGMENTER_SIZE
        ).to_dict(),
        # SAM2.1's mask decoder config: dynamic multimask via stability on, as published
        "mask_decoder_config": Sam2MaskDecoderConfig(
            hidden_size=32,
            mlp_dim=64,
            num_attention_heads=2,
            iou_head_hidden_dim=32,
            dynamic_multimask_via_stability=True,
        ).to_dict(),
    }


@pytest.fixture(scope="session")
def tiny_segmenter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random SAM2 saved as the published `Sam2VideoModel` layout (see the module doc).

    The image processor settings are written as the file Sam2ImageProcessorFast saves (it
    needs torchvision).
    """
    torch.manual_seed(1)
    config = Sam2VideoConfig(
        **tiny_sam2_parts(),
        image_size=SEGMENTER_SIZE,
        memory_attention_hidden_size=32,
        memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[SEGMENTER_SIZE // 16, SEGMENTER_SIZE // 16],
        memory_encoder_hidden_size=32,
        memory_encoder_output_channels=16,
        mask_downsampler_embed_dim=32,
        memory_fuser_embed_dim=32,
        memory_fuser_intermediate_dim=64,
    )
    path = tmp_path_factory.mktemp("tiny_sam2_video")
    Sam2VideoModel(config).save_pretrained(path)
    processor = {
        "point_pad_value": -10,
        "processor_class": "Sam2VideoProcessor",
        "target_size": SEGMENTER_SIZE,
    }
    (path / "processor_config.json").write_text(json.dumps(processor, indent=2))
    settings = {
        "image_processor_type": "Sam2ImageProcessorFast",
        "processor_class": "Sam2VideoProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"height": SEGMENTER_SIZE, "width": SEGMENTER_SIZE},
        "mask_size": {"height": SEGMENTER_SIZE // 4, "width": SEGMENTER_SIZE // 4},
        "resample": 2,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": SEGMENTER_MEAN,
        "image_std": SEGMENTER_STD,
    }
    (path / "preprocessor_config.json").write_text(json.dumps(settings, indent=2))
    return path


@pytest.fixture(scope="session")
def make_tiny_eomt(tmp_path_factory: pytest.TempPathFactory):
    """`make(id2label, seed) -> folder` of a tiny random EoMT (32 × 32 input, patch 8, 4 queries),
    saved without an image processor."""

    def make(id2label: dict[int, str], seed: int) -> Path:
        torch.manual_seed(seed)
        config = EomtConfig(
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            num_blocks=1,
            num_queries=4,
            num_register_tokens=1,
            id2label=id2label,
        )
        path = tmp_path_factory.mktemp("eomt")
        EomtForUniversalSegmentation(config).save_pretrained(path)
        return path

    return make
