"""Named student sizes: "paper" (the CAST student, ≈52M parameters), "small" and "tiny"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # transformers takes seconds to import; the size names must not wait for it
    from transformers import Dinov2Config


@dataclass(frozen=True)
class StudentSize:
    """Architecture of one student size.

    encoder_*: the DINOv2 ViT (patch size 14); image_size sets its position-embedding grid,
    other input sizes interpolate it. reassemble_dims: DPT reassemble channels, shallow to deep.
    dim: channels of the neck outputs and width of the decoder. proj_hidden_dim: hidden width
    of the projection head. pretrained_encoder: the published DINOv2 weights of this encoder
    architecture (a hub id), which `student.encoder: auto` starts from; None: there are none.
    """

    encoder_dim: int
    encoder_layers: int
    encoder_heads: int
    image_size: int
    reassemble_dims: tuple[int, int, int, int]
    dim: int
    decoder_layers: int
    decoder_heads: int
    ffn_dim: int
    num_queries: int
    proj_hidden_dim: int
    pretrained_encoder: str | None = None

    def encoder_config(self) -> Dinov2Config:
        """Dinov2Config of this size's encoder, for random init."""
        from transformers import Dinov2Config

        return Dinov2Config(
            hidden_size=self.encoder_dim,
            num_hidden_layers=self.encoder_layers,
            num_attention_heads=self.encoder_heads,
            image_size=self.image_size,
            patch_size=14,
        )


SIZES: dict[str, StudentSize] = {
    # DINOv2-S/14 (22M) + DPT-Base neck (20M) + 9-layer Mask2Former decoder; the FFN width 1024
    # (Mask2Former: 2048) keeps the total at the paper's 52M.
    "paper": StudentSize(
        encoder_dim=384,
        encoder_layers=12,
        encoder_heads=6,
        image_size=518,
        reassemble_dims=(96, 192, 384, 768),
        dim=256,
        decoder_layers=9,
        decoder_heads=8,
        ffn_dim=1024,
        num_queries=100,
        proj_hidden_dim=256,
        pretrained_encoder="facebook/dinov2-small",
    ),
    "small": StudentSize(
        encoder_dim=192,
        encoder_layers=6,
        encoder_heads=3,
        image_size=224,
        reassemble_dims=(48, 96, 192, 384),
        dim=128,
        decoder_layers=6,
        decoder_heads=4,
        ffn_dim=512,
        num_queries=50,
        proj_hidden_dim=128,
    ),
    # for tests and the CPU demo at 112 x 112
    "tiny": StudentSize(
        encoder_dim=96,
        encoder_layers=4,
        encoder_heads=3,
        image_size=112,
        reassemble_dims=(24, 48, 96, 192),
        dim=64,
        decoder_layers=3,
        decoder_heads=4,
        ffn_dim=256,
        num_queries=20,
        proj_hidden_dim=64,
    ),
}


def student_encoder(size: str, encoder: str) -> str | None:
    """The pretrained encoder weights (hub id or folder) that `student.encoder` gives a student
    of `size`, or None for random weights: "auto" is the size's published encoder (None when it
    has none), "random" is None, anything else is itself."""
    if size not in SIZES:
        raise ValueError(f"student.size: unknown size {size!r}, expected one of {sorted(SIZES)}")
    if encoder == "auto":
        return SIZES[size].pretrained_encoder
    return None if encoder == "random" else encoder
