"""An ensemble teacher: several teachers' instances fused into one set of predictions.

Every member segments the image; per image, all members' queries are pooled (K = Σ K_m) with
their mask logits resized to the largest member resolution and their class distributions
(softmax of the class logits) side by side. `fuse_instances` then applies mask-level
suppression with score fusion across members, and the fused distributions become the class
logits (log-probabilities, so their softmax is the fused distribution). Embeddings are the mean
of the members' embeddings, resized to the first member's grid and renormalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from castseg.models.protocol import Normalisation, SegmentationModel, common_normalisation
from castseg.structures import Predictions


def mask_iou(masks_a: Tensor, masks_b: Tensor) -> Tensor:
    """IoU of every pair of binary masks: [N, h, w] × [M, h, w] → [N, M].

    Two empty masks have IoU 0, as in pycocotools' `maskUtils.iou`. Counts are exact in float32
    up to 2^24 pixels per mask.
    """
    a = masks_a.flatten(1).float()
    b = masks_b.flatten(1).float()
    inter = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1) - inter
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(inter))


def fuse_instances(
    mask_logits: Tensor, class_probs: Tensor, member: Tensor, *, iou: float = 0.5
) -> tuple[Tensor, Tensor]:
    """Mask-level suppression and score fusion of one image's pooled queries.

    Args:
        mask_logits: [K, h, w]; a query's mask is where its logit is > 0.
        class_probs: [K, C+1] class distributions, no-object last.
        member: [K] index of the member that made each query.
        iou: mask IoU from which two queries count as the same instance.

    A query's score is its highest real-class probability and its class that argmax. Queries
    are visited by descending score (ties: lower index first); a visited query that is not
    suppressed is kept, and it suppresses every not yet suppressed, lower-ranked query from
    another member with the same class and mask IoU ≥ `iou`; those form its group. A kept
    query's distribution becomes the score-weighted mean of its group's distributions, itself
    included (Σ s_j p_j / Σ s_j); a suppressed query's becomes one-hot no-object. Queries of
    the same member never suppress each other.

    Returns:
        fused class distributions [K, C+1] and the kept queries [K] bool.
    """
    k, num_classes = class_probs.shape[0], class_probs.shape[1] - 1
    if mask_logits.shape[0] != k or member.shape != (k,):
        raise ValueError(
            f"mask_logits [K, h, w], class_probs [K, C+1] and member [K] disagree on K: "
            f"{tuple(mask_logits.shape)}, {tuple(class_probs.shape)}, {tuple(member.shape)}"
        )
    scores, labels = class_probs[:, :num_classes].max(dim=1)
    masks = mask_logits > 0
    candidates = (
        (mask_iou(masks, masks) >= iou)
        & (labels[:, None] == labels[None, :])
        & (member[:, None] != member[None, :])
    ).cpu()
    order = torch.sort(scores.detach().cpu(), descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(k)
    suppressed = torch.zeros(k, dtype=torch.bool)
    groups = torch.zeros(k, k, dtype=torch.bool)
    for i in order.tolist():
        if suppressed[i]:
            continue
        group = candidates[i] & ~suppressed & (rank > rank[i])
        suppressed |= group
        groups[i] = group
        groups[i, i] = True
    kept = ~suppressed.to(class_probs.device)
    weights = groups.to(class_probs.device) * scores[None, :]
    total = weights.sum(1, keepdim=True)
    fused = torch.where(total > 0, weights @ class_probs / total.clamp_min(1e-12), class_probs)
    no_object = F.one_hot(torch.tensor(num_classes), num_classes + 1).to(class_probs)
    return torch.where(kept[:, None], fused, no_object), kept


class EnsembleTeacher(nn.Module):
    """Teachers over the same classes whose instances are fused (`fuse_instances`); a
    `SegmentationModel` (`castseg.models.protocol`) with no `embed`: its members run whole.

    Args:
        members: models returning `Predictions` with the same C (checked through their
            `config_dict()`: "num_classes", and "class_names" where a member records them).
        class_names: the dataset's classes, checked against the members that record theirs.
        iou: mask IoU from which queries of different members are one instance.
        top_k: keep the top_k queries per image by fused score; None keeps all Σ K_m.
    """

    def __init__(
        self,
        members: Sequence[SegmentationModel],
        *,
        class_names: Sequence[str] | None = None,
        iou: float = 0.5,
        top_k: int | None = None,
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if not 0.0 < iou <= 1.0:
            raise ValueError(f"iou must be in (0, 1], got {iou}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be a positive number of queries or None, got {top_k}")
        configs = [m.config_dict() for m in members]
        counts = [c["num_classes"] for c in configs]
        if len(set(counts)) != 1:
            raise ValueError(f"ensemble members predict different numbers of classes: {counts}")
        self.class_names = None if class_names is None else list(class_names)
        for index, config in enumerate(configs):
            names = config.get("class_names")
            if names is None:
                continue
            if self.class_names is None:
                self.class_names = list(names)
            elif list(names) != self.class_names:
                raise ValueError(
                    f"ensemble member {index} ({config.get('architecture', 'student')}) has "
                    f"classes {list(names)}, expected {self.class_names}"
                )
        if self.class_names is not None and len(self.class_names) != counts[0]:
            raise ValueError(
                f"{len(self.class_names)} class names {self.class_names} but the members "
                f"predict {counts[0]} classes"
            )
        self.num_classes = counts[0]
        self.members = nn.ModuleList(members)
        self.iou = float(iou)
        self.top_k = top_k

    def forward(self, images: Tensor) -> Predictions:
        """Fused predictions of all members.

        Args:
            images: [B, 3, H, W] RGB in [0, 1], as every member takes them.

        Returns:
            Predictions with mask_logits [B, K, h, w] at the largest member resolution
            (K = Σ K_m, or top_k), class_logits [B, K, C+1] = log of the fused distributions,
            embeddings [B, D, h', w'] on the first member's grid (None when no member has
            any), and no aux layers.
        """
        preds = [member(images) for member in self.members]
        size = (
            max(p.mask_logits.shape[-2] for p in preds),
            max(p.mask_logits.shape[-1] for p in preds),
        )
        masks = torch.cat(
            [
                F.interpolate(p.mask_logits, size=size, mode="bilinear", align_corners=False)
                for p in preds
            ],
            dim=1,
        )
        probs = torch.cat([p.class_logits.softmax(-1) for p in preds], dim=1)
        member = torch.cat(
            [torch.full((p.num_queries,), i, device=masks.device) for i, p in enumerate(preds)]
        )
        if self.top_k is not None and self.top_k > masks.shape[1]:
            raise ValueError(
                f"top_k {self.top_k} exceeds the members' {masks.shape[1]} queries in total"
            )
        fused = torch.stack(
            [fuse_instances(masks[b], probs[b], member, iou=self.iou)[0] for b in range(len(masks))]
        )
        if self.top_k is not None:
            scores = fused[..., :-1].amax(-1)
            keep = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, : self.top_k]
            masks = masks.gather(1, keep[:, :, None, None].expand(-1, -1, *size))
            fused = fused.gather(1, keep[:, :, None].expand(-1, -1, fused.shape[-1]))
        logits = fused.clamp_min(torch.finfo(fused.dtype).tiny).log()
        return Predictions(masks, logits, embeddings=self._embeddings(preds))

    def _embeddings(self, preds: list[Predictions]) -> Tensor | None:
        """Mean of the members' unit embeddings on the first member's grid, renormalised."""
        maps = [p.embeddings for p in preds if p.embeddings is not None]
        if not maps:
            return None
        dims = {e.shape[1] for e in maps}
        if len(dims) != 1:
            raise ValueError(f"ensemble members' embedding dimensions differ: {sorted(dims)}")
        grid = maps[0].shape[-2:]
        resized = [F.interpolate(e, size=grid, mode="bilinear", align_corners=False) for e in maps]
        return F.normalize(torch.stack(resized).mean(0), dim=1)

    @property
    def input_normalisation(self) -> Normalisation | None:
        """The members' statistics when they all normalise with the same, else None."""
        return common_normalisation([member.input_normalisation for member in self.members])

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Union of the members' groups, by group name."""
        groups: dict[str, list[nn.Parameter]] = {}
        for member in self.members:
            for name, params in member.parameter_groups().items():
                groups.setdefault(name, []).extend(params)
        return groups

    def config_dict(self) -> dict[str, Any]:
        """Plain data that rebuilds the ensemble with random weights (`build_ensemble`)."""
        return {
            "architecture": "ensemble",
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "members": [member.config_dict() for member in self.members],
            "iou": self.iou,
            "top_k": self.top_k,
        }


def build_ensemble(
    *,
    num_classes: int,
    members: Sequence[dict[str, Any]],
    class_names: Sequence[str] | None = None,
    iou: float = 0.5,
    top_k: int | None = None,
) -> EnsembleTeacher:
    """Rebuild an `EnsembleTeacher` from its `config_dict()`; members through the registry."""
    # imported here: the registry imports builders such as this one on demand
    from castseg.models.registry import build_model

    ensemble = EnsembleTeacher(
        [build_model(args) for args in members], class_names=class_names, iou=iou, top_k=top_k
    )
    if ensemble.num_classes != num_classes:
        raise ValueError(
            f"num_classes {num_classes} but the members predict {ensemble.num_classes} classes"
        )
    return ensemble
