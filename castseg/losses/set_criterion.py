"""Set criterion of Mask2Former: match queries to targets, then class, mask and dice losses.

Used for both the supervised loss (ground truth) and the semi-supervised one (pseudo-labels);
the objective weighs the unweighted terms returned here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from castseg.losses.boxes import box_losses, mask_boxes
from castseg.losses.matcher import HungarianMatcher
from castseg.losses.point_sampling import point_sample, sample_uncertain_points, valid_point_weights
from castseg.losses.precision import float32
from castseg.structures import Instances, LayerPredictions, Predictions


class SetCriterion(nn.Module):
    """Class, mask and dice losses of matched query/target pairs, for every decoder layer.

    Returns unweighted terms "loss_class", "loss_mask", "loss_dice" for the final layer and the
    same keys suffixed "_i" for auxiliary layer i. Mask and dice are computed on importance-sampled
    points of each matched pair and averaged over the number of target instances in the batch.
    When the predictions carry `boxes`, the final layer adds "loss_bbox" (L1) and "loss_giou"
    (1 − GIoU) of the matched pairs against the target masks' boxes (`losses.boxes`), averaged
    the same way; the matching itself stays on class and mask costs.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher,
        no_object_weight: float = 0.1,
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        class_weight = torch.ones(num_classes + 1)
        class_weight[-1] = no_object_weight
        self.register_buffer("class_weight", class_weight)

    def forward(
        self,
        pred: Predictions,
        targets: list[Instances],
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        """Losses of a batch.

        pred: mask_logits [B, K, h, w], class_logits [B, K, C+1] and aux layers of the same shapes;
        targets: B instance sets with masks [M_b, H, W]. generator (on the predictions' device)
        drives matching and point sampling, for reproducible losses. The terms are float32, also
        under autocast.
        """
        with float32(pred.mask_logits):
            return self._losses(pred, targets, generator)

    def _losses(
        self,
        pred: Predictions,
        targets: list[Instances],
        generator: torch.Generator | None,
    ) -> dict[str, Tensor]:
        self._check(pred, targets)
        num_instances = max(sum(len(t) for t in targets), 1)
        losses = {}
        for i, layer in enumerate(pred.aux):
            layer_losses = self.layer_losses(layer, targets, num_instances, generator)
            losses.update({f"{k}_{i}": v for k, v in layer_losses.items()})
        final = LayerPredictions(pred.mask_logits, pred.class_logits)
        indices = self.match(final, targets, generator)
        losses.update(self.layer_losses(final, targets, num_instances, generator, indices))
        if pred.boxes is not None:
            target_boxes = [mask_boxes(t.masks) for t in targets]
            l1, giou = box_losses(pred.boxes, target_boxes, indices, num_instances)
            losses.update({"loss_bbox": l1, "loss_giou": giou})
        return losses

    def match(
        self,
        layer: LayerPredictions,
        targets: list[Instances],
        generator: torch.Generator | None = None,
    ) -> list[tuple[Tensor, Tensor]]:
        """Matched (query, target) indices per image, ordered by target (so point draws do not
        depend on the order of the queries)."""
        indices = self.matcher(layer, targets, generator)
        return [(p[t.argsort()], t.sort().values) for p, t in indices]

    def layer_losses(
        self,
        layer: LayerPredictions,
        targets: list[Instances],
        num_instances: int,
        generator: torch.Generator | None = None,
        indices: list[tuple[Tensor, Tensor]] | None = None,
    ) -> dict[str, Tensor]:
        """Match one decoder layer to the targets (unless `indices` are given) and return its
        three loss terms."""
        if indices is None:
            indices = self.match(layer, targets, generator)
        loss_mask, loss_dice = self.mask_losses(layer, targets, indices, num_instances, generator)
        return {
            "loss_class": self.class_loss(layer, targets, indices),
            "loss_mask": loss_mask,
            "loss_dice": loss_dice,
        }

    def class_loss(
        self,
        layer: LayerPredictions,
        targets: list[Instances],
        indices: list[tuple[Tensor, Tensor]],
    ) -> Tensor:
        """Cross-entropy over all B * K queries; unmatched ones are classed as no-object (C)."""
        logits = layer.class_logits.float()
        target_classes = torch.full(
            logits.shape[:2], self.num_classes, dtype=torch.long, device=logits.device
        )
        for b, (pred_idx, tgt_idx) in enumerate(indices):
            target_classes[b, pred_idx.to(logits.device)] = targets[b].labels[tgt_idx]
        return F.cross_entropy(logits.transpose(1, 2), target_classes, weight=self.class_weight)

    def mask_losses(
        self,
        layer: LayerPredictions,
        targets: list[Instances],
        indices: list[tuple[Tensor, Tensor]],
        num_instances: int,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Sigmoid BCE and dice of matched pairs on uncertain points, summed / num_instances."""
        device = layer.mask_logits.device
        pred_masks = torch.cat(
            [layer.mask_logits[b, p.to(device)] for b, (p, _) in enumerate(indices)]
        )
        if len(pred_masks) == 0:
            # Keep the graph so backward works on batches without any target.
            zero = layer.mask_logits.sum() * 0
            return zero, zero.clone()

        coords = sample_uncertain_points(
            pred_masks[:, None],
            self.num_points,
            self.oversample_ratio,
            self.importance_sample_ratio,
            generator,
        )
        logits = point_sample(pred_masks[:, None].float(), coords)[:, 0]
        with torch.no_grad():
            labels, weights, start = [], [], 0
            for b, (_, tgt_idx) in enumerate(indices):
                pair_coords = coords[start : start + len(tgt_idx)]
                start += len(tgt_idx)
                masks = targets[b].masks[tgt_idx.to(device), None].float()
                labels.append(point_sample(masks, pair_coords)[:, 0])
                weights.append(valid_point_weights(targets[b].ignore, pair_coords))
            labels, weights = torch.cat(labels), torch.cat(weights)

        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        loss_mask = (bce * weights).sum(1) / weights.sum(1).clamp(min=1)

        probs = logits.sigmoid() * weights
        numerator = 2 * (probs * labels).sum(1)
        denominator = probs.sum(1) + (labels * weights).sum(1)
        loss_dice = 1 - (numerator + 1) / (denominator + 1)
        return loss_mask.sum() / num_instances, loss_dice.sum() / num_instances

    def _check(self, pred: Predictions, targets: list[Instances]) -> None:
        if len(targets) != pred.mask_logits.shape[0]:
            raise ValueError(
                f"targets has {len(targets)} images but pred.mask_logits is "
                f"{tuple(pred.mask_logits.shape)}"
            )
        for i, layer in enumerate(pred.layers()):
            if layer.class_logits.shape[-1] != self.num_classes + 1:
                raise ValueError(
                    f"class_logits of layer {i} must be [B, K, num_classes + 1 = "
                    f"{self.num_classes + 1}], got {tuple(layer.class_logits.shape)}"
                )
        labels = torch.cat([target.labels for target in targets])
        out_of_range = (labels < 0) | (labels >= self.num_classes)
        if len(labels) and bool(out_of_range.any()):  # one host sync for the whole batch
            for b, target in enumerate(targets):
                bad = (target.labels < 0) | (target.labels >= self.num_classes)
                if bool(bad.any()):
                    raise ValueError(
                        f"targets[{b}].labels must lie in [0, num_classes = "
                        f"{self.num_classes}), got values {target.labels.tolist()}"
                    )
