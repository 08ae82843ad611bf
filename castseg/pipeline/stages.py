"""The three CAST stages as functions over the same objective (paper §3.3).

teacher adaptation   θ_T^l = argmin J(D_l, ∅; 0, λ_pxl)                 (teacher_finetune)
                     → pseudo-label D_u with θ_T^l → reset to θ_T^0
                     → θ_T'' = argmin J(D_l, D_u; 1, λ_pxl)               (teacher_selftrain)
knowledge transfer   teacher frozen; pseudo-label D_u once; θ_s* = argmin J(D_l, D_u; λ_semi, λ_pxl)
student refinement   θ_s† = argmin J(D_l, ∅; 0, 0) from θ_s*
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from castseg.config import ExperimentConfig
from castseg.pipeline.experiment_data import ExperimentData
from castseg.pipeline.pseudo_label_quality import assess_pseudo_labels
from castseg.pipeline.pseudo_labels import PseudoLabeledDataset, generate_pseudo_labels
from castseg.pipeline.stage_table import (
    DISTILL,
    REFINE,
    TEACHER_FINETUNE,
    TEACHER_SELFTRAIN,
    Stage,
    pseudo_label_teacher,
)
from castseg.runtime.compute import resolve_precision
from castseg.runtime.inference import inference_device
from castseg.training.objective import StageWeights
from castseg.training.optim import OptimSettings
from castseg.training.trainer import StageRun, train_stage


def state_fingerprint(model: nn.Module) -> str:
    """SHA-1 of a model's weights: names a teacher in the pseudo-label cache."""
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(
            tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()


@dataclass
class CastStages:
    """Runs CAST stages for one experiment; every finished stage is appended to `runs`.

    run_key: the run the stages' resumable checkpoints belong to (see `train_stage`).
    """

    cfg: ExperimentConfig
    data: ExperimentData
    out_dir: Path
    progress: bool = True
    runs: list[StageRun] = field(default_factory=list)
    run_key: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.data.categories)

    def train(
        self,
        name: str,
        model: nn.Module,
        weights: StageWeights,
        *,
        steps: int,
        teacher: bool,
        pseudo_labeled: PseudoLabeledDataset | None = None,
        lr_scale: float = 1.0,
    ) -> StageRun:
        """One stage of J on `model` in place, with the teacher's or the student's settings
        (their learning rates times `lr_scale`)."""
        if teacher:
            optim = OptimSettings.for_teacher(self.cfg.teacher)
            batch_size = self.cfg.teacher.batch_size
            contrastive = self.cfg.teacher_contrastive
        else:
            optim = OptimSettings.for_student(self.cfg.student)
            batch_size = self.cfg.student.batch_size
            contrastive = self.cfg.contrastive
        optim = optim.scaled(lr_scale)
        run = train_stage(
            name,
            model,
            self.cfg,
            num_classes=self.num_classes,
            labeled=self.data.labeled,
            pseudo_labeled=pseudo_labeled,
            weights=weights,
            steps=steps,
            optim=optim,
            contrastive=contrastive,
            batch_size=batch_size,
            out_dir=self.out_dir,
            progress=self.progress,
            run_key=self.run_key,
        )
        self.runs.append(run)
        return run

    def pseudo_label(self, teacher: nn.Module, made_by: Stage) -> PseudoLabeledDataset:
        """Pseudo-label D_u once with a frozen teacher, the model of stage `made_by`; cached on
        disk under out_dir/<made_by.pseudo_labels>.jsonl."""
        name = made_by.pseudo_labels
        assert name is not None, f"stage {made_by.name} makes no pseudo-labels"
        if self.data.unlabeled is None:
            raise ValueError("this stage needs unlabeled data: set data.unlabeled or data.split")
        teacher.eval().to(inference_device(self.cfg.run.accelerator))
        fingerprint = {"teacher": state_fingerprint(teacher), "images": len(self.data.unlabeled)}
        cache = generate_pseudo_labels(
            teacher,
            self.data.unlabeled,
            self.out_dir / f"{name}.jsonl",
            image_size=tuple(self.cfg.data.image_size),
            threshold=self.cfg.loss.pseudo_label_threshold,
            nms_iou=self.cfg.loss.pseudo_label_nms_iou,
            top_k=self.cfg.run.eval_top_k,
            fingerprint=fingerprint,
            progress=self.progress,
            precision=resolve_precision(self.cfg.run),
        )
        assess_pseudo_labels(
            cache,
            self.data.unlabeled,
            self.data.labeled,
            teacher=f"{self.cfg.teacher.kind} teacher ({pseudo_label_teacher(name)})",
            threshold=self.cfg.loss.pseudo_label_threshold,
            allow_weak=self.cfg.run.allow_weak_pseudo_labels,
        )
        return PseudoLabeledDataset(self.data.unlabeled, cache)

    def teacher_finetune(self, teacher: nn.Module) -> StageRun:
        """Stage 1a: θ_T^l, the teacher fine-tuned on D_l with L_pxl."""
        return self.train(
            TEACHER_FINETUNE.name,
            teacher,
            StageWeights(0.0, self.cfg.loss.lambda_pxl),
            steps=self.cfg.teacher.finetune_iters,
            teacher=TEACHER_FINETUNE.teacher,
        )

    def teacher_selftrain(self, teacher: nn.Module, pretrained: dict[str, Tensor]) -> StageRun:
        """Stage 1b: pseudo-label D_u with θ_T^l (`teacher` as it is), reset the teacher to the
        pretrained weights θ_T^0, then self-train on D_l and pseudo-labeled D_u → θ_T''."""
        pseudo = self.pseudo_label(teacher, TEACHER_FINETUNE)
        teacher.load_state_dict(pretrained)
        return self.train(
            TEACHER_SELFTRAIN.name,
            teacher,
            StageWeights(1.0, self.cfg.loss.lambda_pxl),
            steps=self.cfg.teacher.selftrain_iters,
            teacher=TEACHER_SELFTRAIN.teacher,
            pseudo_labeled=pseudo,
        )

    def knowledge_transfer(self, student: nn.Module, teacher: nn.Module) -> StageRun:
        """Stage 2: the frozen teacher's pseudo-labels and L_pxl train the student with J."""
        teacher.requires_grad_(False)
        pseudo = self.pseudo_label(teacher, TEACHER_SELFTRAIN)
        weights = StageWeights(self.cfg.loss.lambda_semi, self.cfg.loss.lambda_pxl)
        return self.train(
            DISTILL.name,
            student,
            weights,
            steps=self.cfg.student.distill_iters,
            teacher=DISTILL.teacher,
            pseudo_labeled=pseudo,
        )

    def student_refinement(self, student: nn.Module) -> StageRun:
        """Stage 3: labeled data only, λ_semi = λ_pxl = 0, at `student.refine_lr_scale` times the
        student's learning rates."""
        return self.train(
            REFINE.name,
            student,
            StageWeights(0.0, 0.0),
            steps=self.cfg.student.refine_iters,
            teacher=REFINE.teacher,
            lr_scale=self.cfg.student.refine_lr_scale,
        )
