"""The whole CAST pipeline on one experiment: stages, evaluation, checkpoints and the report."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
from torch import nn

from castseg.config import ExperimentConfig, config_to_dict
from castseg.models.student import build_student
from castseg.report import ModelRow, write_report
from castseg.training.checkpoints import save_checkpoint
from castseg.training.evaluate import evaluate_model
from castseg.training.experiment_data import ExperimentData
from castseg.training.objective import StageWeights
from castseg.training.prediction_samples import save_validation_samples
from castseg.training.stages import CastStages


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class PipelineOutcome:
    """Rows of the results table, the stage runs, and the report's path."""

    rows: list[ModelRow] = field(default_factory=list)
    report: Path | None = None


class CastPipeline:
    """Teacher adaptation → knowledge transfer → student refinement, each model evaluated."""

    def __init__(
        self, cfg: ExperimentConfig, data: ExperimentData, out_dir: Path, *, progress: bool = True
    ) -> None:
        self.cfg = cfg
        self.data = data
        self.out_dir = out_dir
        self.progress = progress
        self.stages = CastStages(cfg, data, out_dir, progress=progress)
        self.outcome = PipelineOutcome()

    def evaluate(self, name: str, model: nn.Module, wall_s: float) -> ModelRow:
        """Mask AP of `model` on the validation set (NaN without one); appended to the table."""
        ap = ap50 = float("nan")
        per_class: dict[str, float] = {}
        if self.data.val is not None:
            result = evaluate_model(
                model,
                self.data.val,
                image_size=tuple(self.cfg.data.image_size),
                top_k=self.cfg.run.eval_top_k,
                progress=self.progress,
                desc=f"eval {name}",
            )
            ap, ap50, per_class = result.metrics.ap, result.metrics.ap50, result.metrics.per_class
        row = ModelRow(name, parameter_count(model), ap, ap50, wall_s, per_class)
        self.outcome.rows.append(row)
        return row

    def save(self, name: str, model: nn.Module, stage: str) -> Path:
        path = self.out_dir / f"{name}.pt"
        save_checkpoint(
            path,
            model,
            category_map=self.data.categories,
            image_size=tuple(self.cfg.data.image_size),
            extra={"stage": stage, "config": config_to_dict(self.cfg)},
        )
        return path

    def run(self, teacher: nn.Module, *, baseline: bool = False) -> PipelineOutcome:
        """All three stages from a pretrained `teacher`; `baseline` adds a supervised student."""
        self.evaluate("teacher (zero-shot)", teacher, 0.0)
        start = time.perf_counter()
        self.stages.teacher_adaptation(teacher)
        self.evaluate("teacher (CAST adapted)", teacher, time.perf_counter() - start)
        self.save("teacher_adapted", teacher, "teacher adaptation")

        L.seed_everything(self.cfg.run.seed, verbose=False)
        student = self.new_student()
        initial_student = copy.deepcopy(student.state_dict())
        start = time.perf_counter()
        self.stages.knowledge_transfer(student, teacher)
        self.evaluate("student (CAST knowledge transfer)", student, time.perf_counter() - start)
        self.stages.student_refinement(student)
        self.evaluate("student (CAST refined)", student, time.perf_counter() - start)
        self.save("student", student, "student refinement")
        if baseline:
            self.supervised_baseline(initial_student)
        self.write_report(student)
        return self.outcome

    def new_student(self) -> nn.Module:
        cfg = self.cfg.student
        return build_student(
            cfg.size,
            len(self.data.categories),
            encoder=cfg.encoder,
            num_queries=cfg.num_queries,
            dropout=cfg.dropout,
            proj_dim=cfg.proj_dim,
        )

    def supervised_baseline(self, initial_state: dict) -> None:
        """The same student, initial weights and step budget, trained on D_l alone."""
        student = self.new_student()
        student.load_state_dict(initial_state)
        steps = self.cfg.student.distill_iters + self.cfg.student.refine_iters
        start = time.perf_counter()
        self.stages.train(
            "supervised_baseline", student, StageWeights(0.0, 0.0), steps=steps, teacher=False
        )
        self.evaluate("student (supervised only)", student, time.perf_counter() - start)
        self.save("student_supervised", student, "supervised baseline")

    def write_report(self, student: nn.Module) -> None:
        samples = None
        if self.data.val is not None:
            samples = save_validation_samples(
                student,
                self.data.val,
                self.out_dir / "predictions.png",
                image_size=tuple(self.cfg.data.image_size),
                top_k=self.cfg.run.eval_top_k,
            )
        self.outcome.report = write_report(
            self.out_dir,
            title="CAST run",
            rows=self.outcome.rows,
            stage_logs={run.name: run.metrics_csv for run in self.stages.runs if run.steps},
            predictions_png=samples,
            config=config_to_dict(self.cfg),
        )
