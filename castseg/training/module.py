"""The LightningModule that optimises J for one stage, for the student and the teacher alike."""

from __future__ import annotations

import logging

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from castseg.config import ContrastiveConfig, LossConfig
from castseg.data.correspondence import correspondence_grid
from castseg.data.views import StrongView
from castseg.losses.contrastive import (
    EmbeddingMemoryBank,
    fused_pseudo_probabilities,
    instance_id_map,
    pixel_contrastive_loss,
    sample_negatives,
    sampling_monitors,
)
from castseg.losses.matcher import HungarianMatcher
from castseg.losses.set_criterion import SetCriterion
from castseg.models.protocol import Embedder
from castseg.structures import Instances, Predictions
from castseg.training.batches import ViewBatch, step_seed
from castseg.training.objective import StageWeights, cast_objective, set_loss
from castseg.training.optim import OptimSettings, build_optimizer

log = logging.getLogger(__name__)


class CastModule(L.LightningModule):
    """Trains `model` on J = L_sup + λ_semi·L_semi + λ_pxl·L_pxl for `steps` steps.

    A batch is {"labeled": ViewBatch} or {"labeled": ViewBatch, "unlabeled": ViewBatch}, the
    unlabeled targets being the teacher's pseudo-labels. L_sup and L_semi are computed on the weak
    views; L_pxl contrasts the weak view with a strong view made here.

    Every random draw of a step (dropout, the strong view, anchors, negatives, sampled points)
    follows a reseed from (seed, rank, step), so a stage resumed from a checkpoint repeats the
    draws of an uninterrupted one. A step whose loss or gradients are not finite is skipped with
    a warning: the weights do not change. `skipped_steps` counts such steps, `nonfinite_streak`
    those since the last finite one, and `last_finite_step` is that step (1-based, 0 for none);
    the three travel in the stage's checkpoints.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        num_classes: int,
        loss: LossConfig,
        contrastive: ContrastiveConfig,
        weights: StageWeights,
        optim: OptimSettings,
        steps: int,
        strong_view: StrongView | None = None,
        monitor_every: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        self.loss_cfg = loss
        self.contrastive = contrastive
        self.weights = weights
        self.optim = optim
        self.steps = steps
        self.strong_view = strong_view or StrongView()
        self.monitor_every = monitor_every
        self.seed = seed
        matcher = HungarianMatcher(
            cost_class=loss.class_weight,
            cost_mask=loss.mask_weight,
            cost_dice=loss.dice_weight,
            num_points=loss.num_points,
        )
        self.criterion = SetCriterion(
            num_classes, matcher, no_object_weight=loss.no_object_weight, num_points=loss.num_points
        )
        self.skipped_steps = 0
        # Past key embeddings as extra negatives (contrastive.memory_bank > 0); under DDP each
        # rank keeps its own.
        self.memory_bank: EmbeddingMemoryBank | None = None
        self.nonfinite_streak = 0
        self.last_finite_step = 0
        self._loss_finite = True

    def on_train_batch_start(self, batch: dict[str, ViewBatch], batch_idx: int) -> None:
        torch.manual_seed(step_seed(self.seed, "module", self.global_rank, self.global_step))

    def training_step(self, batch: dict[str, ViewBatch], batch_idx: int) -> Tensor | None:
        labeled, unlabeled = batch["labeled"], batch.get("unlabeled")
        parts = [labeled] if unlabeled is None else [labeled, unlabeled]
        images = torch.cat([part.images for part in parts])
        pred = self.model(images)
        n_labeled = labeled.images.shape[0]

        l_sup = set_loss(self.criterion(pred.narrow(0, n_labeled), labeled.targets), self.loss_cfg)
        l_semi = None
        if unlabeled is not None and self.weights.lambda_semi > 0:
            pseudo = pred.narrow(n_labeled, unlabeled.images.shape[0])
            l_semi = set_loss(self.criterion(pseudo, unlabeled.targets), self.loss_cfg)
        l_pxl = None
        if self.weights.lambda_pxl > 0:
            targets = [t for part in parts for t in part.targets]
            l_pxl = self.pixel_term(images, pred, targets)

        loss = cast_objective(l_sup, l_semi, l_pxl, self.weights)
        self._loss_finite = self._everywhere(bool(torch.isfinite(loss)))
        if not self._loss_finite:
            self._skip(f"non-finite loss {loss.item()}")
            return None
        batch_size = images.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/l_sup", l_sup, batch_size=batch_size)
        if l_semi is not None:
            self.log("train/l_semi", l_semi, batch_size=batch_size)
        if l_pxl is not None:
            self.log("train/l_pxl", l_pxl, batch_size=batch_size)
        self.log("train/lr", self.optimizers().param_groups[-1]["lr"], batch_size=batch_size)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """End a non-finite streak, or drop the gradients of a step whose loss was finite but
        whose gradients are not. Under a 16-bit gradient scaler, which skips steps with
        overflowing gradients itself (and lowers its scale), only the loss counts."""
        if not self._loss_finite:
            return  # counted in training_step; there are no gradients
        if not self._grad_scaled():
            grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
            grads = [g for g in grads if g is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
            if not torch.isfinite(norm):
                optimizer.zero_grad(set_to_none=True)  # AdamW skips parameters without gradients
                self._skip(f"non-finite gradient norm {norm.item()}")
                return
        self.nonfinite_streak = 0
        self.last_finite_step = self.global_step + 1

    def _grad_scaled(self) -> bool:
        return (
            self._trainer is not None
            and getattr(self.trainer.precision_plugin, "scaler", None) is not None
        )

    def _skip(self, what: str) -> None:
        self.skipped_steps += 1
        self.nonfinite_streak += 1
        log.warning("step %d of %d: %s, step skipped", self.global_step + 1, self.steps, what)

    def _everywhere(self, flag: bool) -> bool:
        """`flag` on every rank (all ranks must skip a step together)."""
        if self._trainer is None:
            return flag
        return self.trainer.strategy.reduce_boolean_decision(flag, all=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["castseg_module"] = {
            "skipped_steps": self.skipped_steps,
            "nonfinite_streak": self.nonfinite_streak,
            "last_finite_step": self.last_finite_step,
            "memory_bank": None if self.memory_bank is None else self.memory_bank.state_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["castseg_module"]
        self.skipped_steps = state["skipped_steps"]
        self.nonfinite_streak = state["nonfinite_streak"]
        self.last_finite_step = state["last_finite_step"]
        if state.get("memory_bank") is not None:
            self.memory_bank = EmbeddingMemoryBank.from_state_dict(state["memory_bank"])

    def pixel_term(self, images: Tensor, pred: Predictions, targets: list[Instances]) -> Tensor:
        """L_pxl between the weak view (`images`, `pred`) and a strong view made from it."""
        if pred.embeddings is None:
            raise ValueError("λ_pxl > 0 needs a model that returns pixel embeddings")
        strong, weak_to_strong = self.strong_view(images)
        # Only the strong view's embeddings are needed: models that can, skip their decoders.
        if isinstance(self.model, Embedder):
            strong_embeddings = self.model.embed(strong)
        else:
            strong_embeddings = self.model(strong).embeddings
        batch, dim, h, w = pred.embeddings.shape
        grid, valid = correspondence_grid(weak_to_strong, tuple(images.shape[-2:]), (h, w))
        # L_pxl and its sampler compute in float32 (also under mixed precision).
        at_weak = F.grid_sample(
            strong_embeddings.float(), grid.float(), align_corners=False, padding_mode="border"
        )
        z_weak = pred.embeddings.float().flatten(2).transpose(1, 2)
        z_strong = at_weak.flatten(2).transpose(1, 2)
        valid = self._limit_anchors(valid.flatten(1))
        cfg = self.contrastive
        y_tilde = fused_pseudo_probabilities(pred.mask_logits, pred.class_logits, (h, w))
        this_step = (z_strong.detach(), y_tilde, valid)  # pushed to the memory bank after use
        banked = None
        if cfg.memory_bank:
            if self.memory_bank is None:
                self.memory_bank = EmbeddingMemoryBank(cfg.memory_bank, dim)
            # Batch and bank rows as one image; the bank rows are candidates, never anchors.
            banked = self.memory_bank.extend(z_weak, z_strong, y_tilde, valid)
            z_weak, z_strong, y_tilde, valid = (
                banked.z_weak,
                banked.z_strong,
                banked.y_tilde,
                banked.valid,
            )
        negatives = sample_negatives(
            y_tilde,
            cfg.num_negatives,
            mode=cfg.mode,
            score=cfg.score,
            num_mask_channels=pred.num_queries,
            num_anchors=batch * h * w,
        )
        l_pxl = pixel_contrastive_loss(
            z_weak, z_strong, negatives, cfg.temperature, valid=valid, margin=cfg.margin
        )
        if self.memory_bank is not None:
            self.memory_bank.push(*this_step)
        # The loggers keep every `monitor_every`-th step only; monitors elsewhere would be wasted.
        if (self.global_step + 1) % self.monitor_every == 0:
            instance_ids = instance_id_map(targets, (h, w))
            if banked is not None:
                instance_ids = banked.instance_ids(instance_ids)
            monitors = sampling_monitors(
                instance_ids,
                negatives,
                z_weak.detach(),
                z_strong.detach(),
                valid,
            )
            for name in ("fnr", "margin"):
                if monitors[name] == monitors[name]:  # NaN when no anchor counted
                    self.log(f"train/{name}", monitors[name], batch_size=batch)
        return l_pxl

    def _limit_anchors(self, valid: Tensor) -> Tensor:
        """Keep at most `contrastive.max_anchors` valid anchors, chosen at random."""
        limit = self.contrastive.max_anchors
        count = int(valid.sum())
        if limit is None or count <= limit:
            return valid
        chosen = valid.flatten().nonzero().squeeze(1)
        chosen = chosen[torch.randperm(count, device=valid.device)[:limit]]
        limited = torch.zeros_like(valid).flatten()
        limited[chosen] = True
        return limited.view_as(valid)

    def configure_optimizers(self) -> dict:
        groups = self.model.parameter_groups()
        optimizer, scheduler = build_optimizer(groups, self.optim, self.steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
