"""DPT neck: pyramid sizes for square and odd patch grids; the encoder's feature layers."""

from __future__ import annotations

import pytest
import torch

from castseg.models.encoder import feature_stages
from castseg.models.neck import DPTNeck


@pytest.mark.parametrize("grid", [(8, 8), (37, 74), (5, 3)])
def test_pyramid_sizes(grid: tuple[int, int]) -> None:
    h, w = grid
    neck = DPTNeck(embed_dim=24, reassemble_dims=(8, 8, 16, 16), dim=16)
    tokens = [torch.randn(2, 1 + h * w, 24) for _ in range(4)]
    features = neck(tokens, grid)
    half = (-(-h // 2), -(-w // 2))
    assert [f.shape for f in features.multi_scale] == [
        (2, 16, *half),
        (2, 16, h, w),
        (2, 16, 2 * h, 2 * w),
    ]
    assert features.mask_features.shape == (2, 16, 4 * h, 4 * w)
    assert features.patch_features.shape == (2, 16, h, w)


def test_cls_token_reaches_the_features() -> None:
    torch.manual_seed(0)
    neck = DPTNeck(embed_dim=24, reassemble_dims=(8, 8, 16, 16), dim=16)
    tokens = [torch.randn(1, 1 + 16, 24) for _ in range(4)]
    changed = [t.clone() for t in tokens]
    changed[0][:, 0] += 1.0  # only the CLS token of the first layer
    a, b = neck(tokens, (4, 4)).mask_features, neck(changed, (4, 4)).mask_features
    assert not torch.allclose(a, b)


def test_feature_stages_are_spread_evenly() -> None:
    assert feature_stages(12) == ["stage3", "stage6", "stage9", "stage12"]
    assert feature_stages(4) == ["stage1", "stage2", "stage3", "stage4"]
    with pytest.raises(ValueError, match="num_hidden_layers = 3"):
        feature_stages(3)
