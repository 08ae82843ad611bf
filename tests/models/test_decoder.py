"""Mask-transformer decoder: attention masks from predictions, prediction count and shapes."""

from __future__ import annotations

import torch
from torch import nn

from castseg.models.decoder import MaskTransformerDecoder


def test_attention_mask_follows_the_predicted_masks() -> None:
    decoder = MaskTransformerDecoder(num_classes=3, dim=8, num_queries=3, num_layers=1, num_heads=2)
    # make the mask logits the plain dot product of query and feature
    decoder.norm = nn.Identity()
    decoder.mask_embed = nn.Identity()
    features = torch.zeros(1, 8, 4, 4)
    features[0, 0] = 1.0
    features[0, 1, :, :2] = 1.0  # left half positive,
    features[0, 1, :, 2:] = -1.0  # right half negative
    queries = torch.zeros(1, 3, 8)
    queries[0, 0, 0] = 1.0  # foreground everywhere
    queries[0, 1, 0] = -1.0  # background everywhere
    queries[0, 2, 1] = 1.0  # the left half

    prediction, mask = decoder.predict(queries, features, attn_size=(2, 2))

    torch.testing.assert_close(
        prediction.mask_logits, torch.einsum("bkd,bdhw->bkhw", queries, features)
    )
    left = torch.tensor([False, True, False, True])  # [2, 2] row-major: right column masked
    expected = torch.stack(
        [torch.zeros(4, dtype=torch.bool), torch.zeros(4, dtype=torch.bool), left]
    )
    assert mask.shape == (2, 3, 4)  # [B * heads, K, h * w]
    for head in range(2):
        assert torch.equal(mask[head], expected)


def test_one_prediction_per_layer_plus_the_initial_queries() -> None:
    torch.manual_seed(0)
    decoder = MaskTransformerDecoder(
        num_classes=4, dim=16, num_queries=5, num_layers=4, num_heads=4, ffn_dim=32
    )
    levels = [torch.randn(2, 16, s, s + 1) for s in (2, 4, 8)]
    predictions = decoder(levels, torch.randn(2, 16, 16, 18))
    assert len(predictions) == 5
    for prediction in predictions:
        assert prediction.mask_logits.shape == (2, 5, 16, 18)
        assert prediction.class_logits.shape == (2, 5, 5)
    # every layer changes the queries
    for before, after in zip(predictions, predictions[1:], strict=False):
        assert not torch.allclose(before.class_logits, after.class_logits)
