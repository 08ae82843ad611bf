"""The CAST student: DINOv2 encoder → DPT neck → mask-transformer decoder, plus a projection head.

Build one with `build_student(size, num_classes)`; rebuild a saved one with
`build_student(**student.config_dict())` followed by `load_state_dict`.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from transformers import Dinov2Config

from castseg.models.decoder import MaskTransformerDecoder
from castseg.models.encoder import DinoEncoder
from castseg.models.heads import ProjectionHead
from castseg.models.neck import DPTNeck
from castseg.models.protocol import Normalisation
from castseg.models.sizes import SIZES
from castseg.structures import Predictions


class Student(nn.Module):
    """Instance-segmentation student returning `Predictions` (a `SegmentationModel` and an
    `Embedder`, `castseg.models.protocol`).

    Args:
        encoder: the DINOv2 encoder.
        neck: DPT neck over the encoder's four layers.
        decoder: mask-transformer decoder over the neck's pyramid.
        head: projection head over the neck's patch-stride feature.
        build_args: the `build_student` arguments (without `encoder`) that rebuild this model.
    """

    def __init__(
        self,
        encoder: DinoEncoder,
        neck: DPTNeck,
        decoder: MaskTransformerDecoder,
        head: ProjectionHead,
        build_args: dict[str, Any],
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.neck = neck
        self.decoder = decoder
        self.head = head
        self.build_args = dict(build_args)

    def forward(self, images: Tensor) -> Predictions:
        """Segment a batch.

        Args:
            images: [B, 3, H, W] RGB in [0, 1]; H and W multiples of 14.

        Returns:
            Predictions with mask_logits [B, K, 4h, 4w] (h, w = H/14, W/14), class_logits
            [B, K, C+1], embeddings [B, D, h, w] with unit ℓ2 norm, and aux holding the L earlier
            predictions of the decoder: from the initial queries and after layers 1 … L-1.
        """
        tokens, grid = self.encoder(images)
        features = self.neck(tokens, grid)
        *aux, final = self.decoder(features.multi_scale, features.mask_features)
        return Predictions(
            mask_logits=final.mask_logits,
            class_logits=final.class_logits,
            embeddings=self.head(features.patch_features),
            aux=aux,
        )

    def embed(self, images: Tensor) -> Tensor:
        """The `embeddings` of `forward(images)` alone, without the decoder and the neck's two
        finer levels."""
        tokens, grid = self.encoder(images)
        return self.head(self.neck.patch_features(tokens, grid))

    @property
    def input_normalisation(self) -> Normalisation:
        """The encoder's: the ImageNet statistics."""
        return self.encoder.normalisation

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by learning rate: "encoder" (DINOv2) and "decoder" (neck, decoder, head)."""
        rest = [*self.neck.parameters(), *self.decoder.parameters(), *self.head.parameters()]
        return {"encoder": list(self.encoder.parameters()), "decoder": rest}

    def config_dict(self) -> dict[str, Any]:
        """Keyword arguments of `build_student` that rebuild this architecture (random init).

        The encoder is recorded as its Dinov2Config (`encoder_config`), so rebuilding a
        checkpoint needs no hub access.
        """
        return {**self.build_args, "encoder_config": self.encoder.backbone.config.to_diff_dict()}


def build_student(
    size: str,
    num_classes: int,
    *,
    encoder: str | None = None,
    encoder_config: dict[str, Any] | None = None,
    num_queries: int | None = None,
    dropout: float = 0.1,
    proj_dim: int = 128,
) -> Student:
    """Build a student of a named size.

    Args:
        size: "paper" (DINOv2-S/14, ≈52M parameters), "small" or "tiny" (CPU tests and demo).
        num_classes: C, the number of real classes.
        encoder: hub id or local directory of pretrained DINOv2 weights (its config then defines
            the encoder); None for a random encoder of the size's architecture.
        encoder_config: a Dinov2Config as a dict for a random encoder of that architecture
            (what `config_dict` records); excludes `encoder`.
        num_queries: K; None for the size's default.
        dropout: dropout of the decoder.
        proj_dim: D, the embedding dimension of the projection head.
    """
    if size not in SIZES:
        raise ValueError(f"unknown student size {size!r}, expected one of {sorted(SIZES)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if encoder is not None and encoder_config is not None:
        raise ValueError("give either encoder (pretrained weights) or encoder_config, not both")
    spec = SIZES[size]
    if encoder is not None:
        dino = DinoEncoder(pretrained=encoder)
    elif encoder_config is not None:
        dino = DinoEncoder(Dinov2Config.from_dict(encoder_config))
    else:
        dino = DinoEncoder(spec.encoder_config())
    num_queries = spec.num_queries if num_queries is None else num_queries
    decoder = MaskTransformerDecoder(
        num_classes,
        dim=spec.dim,
        num_queries=num_queries,
        num_layers=spec.decoder_layers,
        num_heads=spec.decoder_heads,
        ffn_dim=spec.ffn_dim,
        dropout=dropout,
    )
    build_args = {
        "size": size,
        "num_classes": num_classes,
        "num_queries": num_queries,
        "dropout": dropout,
        "proj_dim": proj_dim,
    }
    return Student(
        encoder=dino,
        neck=DPTNeck(dino.hidden_size, spec.reassemble_dims, spec.dim),
        decoder=decoder,
        head=ProjectionHead(spec.dim, spec.proj_hidden_dim, proj_dim),
        build_args=build_args,
    )
