"""Hungarian matching of predicted queries to target instances (Mask2Former's matcher)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from castseg.losses.point_sampling import point_sample, valid_point_weights
from castseg.losses.precision import float32
from castseg.structures import Instances, LayerPredictions


class HungarianMatcher:
    """One-to-one assignment of queries to targets that minimises a class + mask + dice cost.

    The cost of query k for target m is
    `cost_class * -p_k(label_m) + cost_mask * BCE(k, m) + cost_dice * dice(k, m)`,
    with BCE and dice computed on `num_points` uniform random points shared by all queries and
    targets of an image. Points in crowd regions (`Instances.ignore`) are left out.
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_mask: float = 5.0,
        cost_dice: float = 5.0,
        num_points: int = 12544,
    ) -> None:
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {num_points}")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    def cost_matrix(
        self, mask_logits: Tensor, class_logits: Tensor, target: Instances, coords: Tensor
    ) -> Tensor:
        """Matching cost of one image at given points.

        mask_logits: [K, h, w]; class_logits: [K, C+1]; target with M instances; coords: [P, 2]
        in [0, 1], (x, y). Returns [K, M] float32, also under autocast.
        """
        with float32(mask_logits):
            return self._cost_matrix(mask_logits.float(), class_logits.float(), target, coords)

    def _cost_matrix(
        self, mask_logits: Tensor, class_logits: Tensor, target: Instances, coords: Tensor
    ) -> Tensor:
        probs = class_logits.float().softmax(-1)
        class_cost = -probs[:, target.labels]

        points = coords[None]
        pred = point_sample(mask_logits[:, None].float(), points.expand(len(mask_logits), -1, -1))
        pred = pred[:, 0]
        tgt = point_sample(target.masks[:, None].float(), points.expand(len(target), -1, -1))
        tgt = tgt[:, 0]
        weight = valid_point_weights(target.ignore, points)[0]

        # BCE against target 1 and 0 at every point, mixed by the target value per pair.
        pos = F.binary_cross_entropy_with_logits(pred, torch.ones_like(pred), reduction="none")
        neg = F.binary_cross_entropy_with_logits(pred, torch.zeros_like(pred), reduction="none")
        num_valid = weight.sum().clamp(min=1)
        mask_cost = ((pos * weight) @ tgt.T + (neg * weight) @ (1 - tgt).T) / num_valid

        prob = pred.sigmoid() * weight
        numerator = 2 * prob @ tgt.T
        denominator = prob.sum(-1)[:, None] + (tgt * weight).sum(-1)[None, :]
        dice_cost = 1 - (numerator + 1) / (denominator + 1)

        return (
            self.cost_class * class_cost + self.cost_mask * mask_cost + self.cost_dice * dice_cost
        )

    @torch.no_grad()
    def matching_costs(
        self,
        pred: LayerPredictions,
        targets: list[Instances],
        generator: torch.Generator | None = None,
    ) -> list[Tensor]:
        """Cost matrices [K, M_b] of every image, each on its own uniform random points.

        generator must live on the device of the predictions.
        """
        if len(targets) != pred.mask_logits.shape[0]:
            raise ValueError(
                f"targets has {len(targets)} images but mask_logits is "
                f"{tuple(pred.mask_logits.shape)}"
            )
        costs = []
        for b, target in enumerate(targets):
            if len(target) == 0:
                costs.append(pred.mask_logits.new_zeros(pred.num_queries, 0, dtype=torch.float32))
                continue
            coords = torch.rand(
                self.num_points, 2, generator=generator, device=pred.mask_logits.device
            )
            costs.append(
                self.cost_matrix(pred.mask_logits[b], pred.class_logits[b], target, coords)
            )
        return costs

    @torch.no_grad()
    def __call__(
        self,
        pred: LayerPredictions,
        targets: list[Instances],
        generator: torch.Generator | None = None,
    ) -> list[tuple[Tensor, Tensor]]:
        """Match queries to targets image by image.

        pred: mask_logits [B, K, h, w], class_logits [B, K, C+1]; targets: B instance sets.
        Returns per image (pred_idx, target_idx), two int64 CPU tensors of length min(K, M_b).
        """
        costs = self.matching_costs(pred, targets, generator)
        # One copy to the host for the whole batch (one wait for the GPU, not one per image).
        flat = torch.cat([cost.flatten() for cost in costs]).cpu()
        indices = []
        for cost, shape in zip(
            flat.split([cost.numel() for cost in costs]), [c.shape for c in costs], strict=True
        ):
            # Diverged predictions (NaN/inf) still get a matching; the loss reports the problem.
            cost = torch.nan_to_num(cost.view(shape), nan=1e8, posinf=1e8, neginf=-1e8)
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append(
                (torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long))
            )
        return indices
