"""The CAST objective J — the one place where loss weights are applied.

    J = L_sup + λ_semi · L_semi + λ_pxl · L_pxl                      (paper §3.3)

L_sup and L_semi are the set loss of the criterion's unweighted terms, each weighted by the
config's class / mask / dice weights (Table 8: class 2, mask 5, dice 5) and summed over the final
and the auxiliary decoder layers, as Mask2Former does. For a model that regresses boxes (the
GroundedSAM2 teacher) the final layer's box terms join them with the box / GIoU weights
(Grounding DINO's fine-tuning: L1 5, GIoU 2).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from castseg.config import LossConfig


@dataclass(frozen=True)
class StageWeights:
    """λ_semi and λ_pxl of one stage (teacher fine-tuning, self-training, distillation, ...)."""

    lambda_semi: float
    lambda_pxl: float


def set_loss(terms: dict[str, Tensor], weights: LossConfig) -> Tensor:
    """Σ_layers (w_class · loss_class + w_mask · loss_mask + w_dice · loss_dice)
    + w_box · loss_bbox + w_giou · loss_giou.

    Args:
        terms: the criterion's output: "loss_class", "loss_mask", "loss_dice" and the same with
            a "_<layer>" suffix for auxiliary layers; "loss_bbox" and "loss_giou" for models
            with boxes.
    """
    per_kind = {
        "loss_class": weights.class_weight,
        "loss_mask": weights.mask_weight,
        "loss_dice": weights.dice_weight,
        "loss_bbox": weights.box_weight,
        "loss_giou": weights.giou_weight,
    }
    total = None
    for key, value in terms.items():
        kind = key.rsplit("_", 1)[0] if key.rsplit("_", 1)[-1].isdigit() else key
        if kind not in per_kind:
            raise ValueError(f"unknown criterion term {key!r}; expected {sorted(per_kind)}")
        weighted = per_kind[kind] * value
        total = weighted if total is None else total + weighted
    if total is None:
        raise ValueError("the criterion returned no terms")
    return total


def cast_objective(
    l_sup: Tensor, l_semi: Tensor | None, l_pxl: Tensor | None, weights: StageWeights
) -> Tensor:
    """J = L_sup + λ_semi · L_semi + λ_pxl · L_pxl; a missing term (None) counts as zero."""
    total = l_sup
    if l_semi is not None and weights.lambda_semi:
        total = total + weights.lambda_semi * l_semi
    if l_pxl is not None and weights.lambda_pxl:
        total = total + weights.lambda_pxl * l_pxl
    return total
