"""DPT neck: reassemble four ViT layers into a feature pyramid and fuse it coarse to fine.

Reassembly is transformers' `DPTReassembleStage` (CLS readout projection, 1x1 projection, resize
by 4, 2, 1, 1/2 of the patch grid). Fusion follows DPT's residual conv units, with one change:
each block upsamples the coarser path to the size of its skip feature before merging (as Depth
Anything does) instead of upsampling by 2 after merging. The outputs then sit at 1/2, 1, 2 and 4
times the patch grid, so odd grids (37 × 74 for 518 × 1036 images) stay aligned, and no block
runs at 8 times the grid, which nothing downstream reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn
from transformers import DPTConfig
from transformers.models.dpt.modeling_dpt import DPTPreActResidualLayer, DPTReassembleStage

REASSEMBLE_FACTORS = (4, 2, 1, 0.5)


@dataclass
class NeckFeatures:
    """Outputs of the neck, all with `dim` channels; h × w is the patch grid.

    multi_scale: [B, dim, h/2, w/2], [B, dim, h, w], [B, dim, 2h, 2w] (coarse to fine), the
    features the decoder's masked cross-attention reads. mask_features: [B, dim, 4h, 4w].
    """

    multi_scale: list[Tensor]
    mask_features: Tensor

    @property
    def patch_features(self) -> Tensor:
        """[B, dim, h, w], the fused feature at the patch stride."""
        return self.multi_scale[1]


class FusionBlock(nn.Module):
    """DPT feature fusion: residual unit on the skip feature, add the coarser path, residual unit,
    1x1 projection. The coarser path is resized bilinearly to the skip feature's size."""

    def __init__(self, config: DPTConfig) -> None:
        super().__init__()
        dim = config.fusion_hidden_size
        self.skip_unit = DPTPreActResidualLayer(config)
        self.fuse_unit = DPTPreActResidualLayer(config)
        self.projection = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, skip: Tensor, coarser: Tensor | None = None) -> Tensor:
        """skip: [B, dim, h, w]; coarser: [B, dim, h', w'] or None → [B, dim, h, w]."""
        fused = self.skip_unit(skip)
        if coarser is not None:
            fused = fused + F.interpolate(
                coarser, size=skip.shape[-2:], mode="bilinear", align_corners=False
            )
        return self.projection(self.fuse_unit(fused))


class DPTNeck(nn.Module):
    """Dense prediction neck over four ViT layers.

    Args:
        embed_dim: channels E of the encoder tokens.
        reassemble_dims: channels of the four reassembled maps, shallow to deep (DPT-Base uses
            96, 192, 384, 768).
        dim: channels of every fused output.
    """

    def __init__(
        self, embed_dim: int, reassemble_dims: tuple[int, int, int, int], dim: int
    ) -> None:
        super().__init__()
        if len(reassemble_dims) != len(REASSEMBLE_FACTORS):
            raise ValueError(
                f"reassemble_dims needs {len(REASSEMBLE_FACTORS)} entries, got {reassemble_dims}"
            )
        config = DPTConfig(
            hidden_size=embed_dim,
            neck_hidden_sizes=list(reassemble_dims),
            reassemble_factors=list(REASSEMBLE_FACTORS),
            readout_type="project",
            fusion_hidden_size=dim,
        )
        self.dim = dim
        self.reassemble = DPTReassembleStage(config)
        self.project = nn.ModuleList(
            nn.Conv2d(c, dim, kernel_size=3, padding=1, bias=False) for c in reassemble_dims
        )
        self.fusion = nn.ModuleList(FusionBlock(config) for _ in reassemble_dims)

    def forward(self, tokens: list[Tensor], grid: tuple[int, int]) -> NeckFeatures:
        """Fuse encoder layers into a pyramid.

        Args:
            tokens: four token maps [B, 1 + h*w, E], CLS first, shallow to deep.
            grid: the patch grid (h, w).
        """
        return NeckFeatures(*self._fuse(tokens, grid, levels=len(REASSEMBLE_FACTORS)))

    def patch_features(self, tokens: list[Tensor], grid: tuple[int, int]) -> Tensor:
        """`forward(tokens, grid).patch_features` alone: the two finer levels (2h and 4h, the
        neck's costliest convolutions) are not fused."""
        multi_scale, _ = self._fuse(tokens, grid, levels=2)
        return multi_scale[1]

    def _fuse(
        self, tokens: list[Tensor], grid: tuple[int, int], levels: int
    ) -> tuple[list[Tensor], Tensor]:
        """(the first three fused maps, coarse to fine; the fourth), of the `levels` coarsest."""
        maps = self.reassemble(tokens, patch_height=grid[0], patch_width=grid[1])
        fused: list[Tensor] = []
        coarser = None
        pairs = list(zip(self.fusion, self.project[::-1], reversed(maps), strict=True))
        for block, project, skip in pairs[:levels]:
            coarser = block(project(skip), coarser)
            fused.append(coarser)
        return fused[:3], fused[-1]
