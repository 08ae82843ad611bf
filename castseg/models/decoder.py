"""Mask2Former-style transformer decoder: learned queries read the feature pyramid through masked
cross-attention and predict a class and a mask each.

Each layer runs masked cross-attention to one pyramid level (round robin, coarse to fine; keys
carry a level embedding and Mask2Former's sine position encoding), then self-attention among the
queries, then an FFN (post-norm, as Mask2Former). A shared head predicts classes and masks from
the initial queries and after every layer; each prediction's mask, resized to the next level,
restricts where the next layer's queries may attend.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerSinePositionEmbedding,
)

from castseg.structures import LayerPredictions


class DecoderLayer(nn.Module):
    """Masked cross-attention → self-attention → FFN, each with residual, dropout, LayerNorm."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, queries: Tensor, query_pos: Tensor, memory: Tensor, memory_pos: Tensor, mask: Tensor
    ) -> Tensor:
        """queries, query_pos: [B, K, D]; memory: [B, N, D]; memory_pos: [N, D];
        mask: [B * heads, K, N] bool, True = may not attend. Returns [B, K, D]."""
        attended, _ = self.cross_attn(
            queries + query_pos, memory + memory_pos, memory, attn_mask=mask, need_weights=False
        )
        queries = self.norms[0](queries + self.dropout(attended))
        q = queries + query_pos
        attended, _ = self.self_attn(q, q, queries, need_weights=False)
        queries = self.norms[1](queries + self.dropout(attended))
        return self.norms[2](queries + self.dropout(self.ffn(queries)))


class MaskTransformerDecoder(nn.Module):
    """K learned queries decoded against a feature pyramid into masks and classes.

    Args:
        num_classes: C real classes; the class head predicts C + 1 logits (last = no object).
        dim: channels of the queries and of every input feature.
        num_queries: K.
        num_layers: L decoder layers.
        num_heads: attention heads.
        ffn_dim: hidden width of the FFNs.
        dropout: dropout in attention and FFN.
        num_levels: pyramid levels the cross-attention cycles through.
    """

    def __init__(
        self,
        num_classes: int,
        dim: int = 256,
        num_queries: int = 100,
        num_layers: int = 9,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        num_levels: int = 3,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.query_feat = nn.Embedding(num_queries, dim)
        self.query_pos = nn.Embedding(num_queries, dim)
        self.level_embed = nn.Embedding(num_levels, dim)
        self.position = Mask2FormerSinePositionEmbedding(dim // 2, normalize=True)
        self.layers = nn.ModuleList(
            DecoderLayer(dim, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.class_head = nn.Linear(dim, num_classes + 1)
        self.mask_embed = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim)
        )

    def predict(
        self, queries: Tensor, mask_features: Tensor, attn_size: tuple[int, int]
    ) -> tuple[LayerPredictions, Tensor]:
        """Predict from queries [B, K, D] and mask features [B, D, H, W].

        Returns the prediction (mask_logits [B, K, H, W], class_logits [B, K, C+1]) and the
        attention mask for a level of size `attn_size` = (h, w): [B * heads, K, h*w] bool,
        True where the predicted mask is below 0.5; a query masked everywhere is unmasked.
        """
        queries = self.norm(queries)
        class_logits = self.class_head(queries)
        mask_logits = torch.einsum("bkd,bdhw->bkhw", self.mask_embed(queries), mask_features)
        resized = F.interpolate(
            mask_logits.detach(), size=attn_size, mode="bilinear", align_corners=False
        )
        mask = resized.flatten(2) < 0  # sigmoid(x) < 0.5
        mask = mask & ~mask.all(dim=-1, keepdim=True)
        mask = mask.repeat_interleave(self.num_heads, dim=0)
        return LayerPredictions(mask_logits, class_logits), mask

    def forward(self, multi_scale: list[Tensor], mask_features: Tensor) -> list[LayerPredictions]:
        """Decode.

        Args:
            multi_scale: the pyramid levels, coarse to fine, each [B, D, h_l, w_l].
            mask_features: [B, D, H, W], the map masks are predicted on.

        Returns:
            L + 1 predictions: from the initial queries, then after each layer (last = final).
        """
        if len(multi_scale) != self.level_embed.num_embeddings:
            raise ValueError(
                f"the decoder expects {self.level_embed.num_embeddings} feature levels, "
                f"got {len(multi_scale)}"
            )
        memories, positions, sizes = [], [], []
        for level, feature in enumerate(multi_scale):
            h, w = feature.shape[-2:]
            memories.append(feature.flatten(2).transpose(1, 2) + self.level_embed.weight[level])
            pos = self.position((1, *feature.shape[1:]), feature.device, torch.float32)
            positions.append(pos.flatten(2).transpose(1, 2)[0].to(feature.dtype))
            sizes.append((h, w))

        batch = mask_features.shape[0]
        queries = self.query_feat.weight.unsqueeze(0).expand(batch, -1, -1)
        query_pos = self.query_pos.weight.unsqueeze(0).expand(batch, -1, -1)
        prediction, mask = self.predict(queries, mask_features, sizes[0])
        predictions = [prediction]
        for i, layer in enumerate(self.layers):
            level = i % len(memories)
            queries = layer(queries, query_pos, memories[level], positions[level], mask)
            next_size = sizes[(i + 1) % len(sizes)]
            prediction, mask = self.predict(queries, mask_features, next_size)
            predictions.append(prediction)
        return predictions
