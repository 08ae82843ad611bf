"""The whole CAST pipeline on one experiment: stages, evaluation, checkpoints, report, resume.

A run is a sequence of stages (`castseg.pipeline.stage_table`). Each one, once done, is recorded
in the run state (`castseg.pipeline.run_state`) with its model checkpoint and its rows of the
results table.

The results table also goes to `results.json` (`castseg.pipeline.results`) for summaries.

A rerun into the same folder skips the finished stages, loading their weights where a later
stage needs them, and resumes an interrupted stage from its last checkpoint (`train_stage`).
Wall times are those of the run that finished each stage (of a resumed one, its last attempt).

With `run.stage_store` set (the default), the teacher stages and the adapted teacher's
pseudo-labels come from the shared stage store when an earlier run computed them from the same
inputs, and go there otherwise (`castseg.pipeline.stage_store`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
from torch import nn

from castseg.config import ExperimentConfig, config_to_dict
from castseg.interruption import Interrupted
from castseg.models.checkpoints import load_checkpoint, save_checkpoint
from castseg.models.sizes import student_encoder
from castseg.models.student import build_student
from castseg.pipeline.experiment_data import ExperimentData
from castseg.pipeline.fingerprints import run_fingerprint, teacher_stage_fingerprint
from castseg.pipeline.prediction_samples import save_validation_samples
from castseg.pipeline.pseudo_label_quality import read_pseudo_label_rows, save_pseudo_label_samples
from castseg.pipeline.results import write_results
from castseg.pipeline.run_state import RUN_STATE_FILE, FinishedStage, RunState
from castseg.pipeline.stage_store import (
    ADAPTED_PSEUDO_LABELS,
    SharedTeacherStages,
    StageStore,
    store_root,
)
from castseg.pipeline.stage_table import (
    DISTILL,
    PSEUDO_LABEL_PREFIX,
    REFINE,
    STAGES,
    SUPERVISED_BASELINE,
    TEACHER_FINETUNE,
    TEACHER_SELFTRAIN,
    TEACHER_STAGES,
    TEACHER_ZERO_SHOT,
    Stage,
)
from castseg.pipeline.stages import CastStages, state_fingerprint
from castseg.report import CAST_STUDENT, narrative, write_report
from castseg.result_tables import ModelRow, PseudoLabelRow
from castseg.runtime.compute import apply_compute_settings, resolve_precision
from castseg.runtime.distributed import barrier, is_rank_zero
from castseg.runtime.evaluate import evaluate_model
from castseg.runtime.inference import inference_device
from castseg.training.objective import StageWeights
from castseg.training.trainer import StageRun, discard_resume_files


@dataclass
class PipelineOutcome:
    """Rows of the results table, the stages this invocation ran (not skipped or reused), the
    paths of the report and of results.json, and the quality of each teacher's pseudo-labels."""

    rows: list[ModelRow] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    report: Path | None = None
    pseudo_labels: list[PseudoLabelRow] = field(default_factory=list)
    results: Path | None = None


class CastPipeline:
    """Teacher adaptation → knowledge transfer → student refinement, each model evaluated.

    restart: discard an earlier run in `out_dir` (its state, resumable checkpoints and
    pseudo-label caches) instead of resuming it.
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        data: ExperimentData,
        out_dir: Path,
        *,
        progress: bool = True,
        restart: bool = False,
        about: Sequence[str] = (),
    ) -> None:
        self.cfg = cfg
        self.about = list(about)  # sentences that open report.md's story (what the models are)
        self.data = data
        self.out_dir = out_dir
        self.progress = progress
        self.restart = restart
        self.stages = CastStages(cfg, data, out_dir, progress=progress)
        self.outcome = PipelineOutcome()
        self.state: RunState | None = None
        # Weights of skipped stages, loaded only when a stage that runs needs them.
        self._pending: dict[int, tuple[nn.Module, Path]] = {}
        self.resumed: list[str] = []  # stages an earlier run had finished, for the report
        # Stages taken from the shared stage store: name → the store entry.
        self.reused: dict[str, Path] = {}

    def evaluate(self, name: str, model: nn.Module, wall_s: float) -> ModelRow:
        """Mask AP of `model` on the validation set (NaN without one); appended to the table."""
        ap = ap50 = float("nan")
        per_class: dict[str, float] = {}
        if self.data.val is not None:
            model.to(inference_device(self.cfg.run.accelerator))
            result = evaluate_model(
                model,
                self.data.val,
                image_size=tuple(self.cfg.data.image_size),
                top_k=self.cfg.run.eval_top_k,
                progress=self.progress,
                desc=f"eval {name}",
                precision=resolve_precision(self.cfg.run),
            )
            ap, ap50, per_class = result.metrics.ap, result.metrics.ap50, result.metrics.per_class
        parameters = sum(p.numel() for p in model.parameters())
        row = ModelRow(name, parameters, ap, ap50, wall_s, per_class)
        self.outcome.rows.append(row)
        return row

    def save(self, checkpoint: str, model: nn.Module, stage: str) -> Path:
        path = self.out_dir / checkpoint
        if is_rank_zero():  # every rank holds the same weights after a DDP stage
            save_checkpoint(
                path,
                model,
                category_map=self.data.categories,
                image_size=tuple(self.cfg.data.image_size),
                extra={"stage": stage, "config": config_to_dict(self.cfg)},
            )
        barrier()
        return path

    def run(self, teacher: nn.Module, *, baseline: bool = False) -> PipelineOutcome:
        """All three stages from a pretrained `teacher`; `baseline` adds a supervised student."""
        apply_compute_settings(self.cfg.run)
        if self.restart:
            self.discard_run()
        teacher_weights = state_fingerprint(teacher)
        fingerprint = run_fingerprint(self.cfg, teacher_weights)
        self.state = RunState.open(self.out_dir, fingerprint)
        threads = self.state.threads_note()
        if threads is not None:
            print(f"Note: {threads}")
        barrier()
        self.stages.run_key = self.state.key
        pretrained = copy.deepcopy(teacher.state_dict())
        shared = self.shared_stages(teacher_weights)
        if shared is not None:
            self.reuse_teacher_stages(shared)

        self.stage(TEACHER_ZERO_SHOT, teacher, None)
        self.stage(TEACHER_FINETUNE, teacher, lambda: self.stages.teacher_finetune(teacher))
        self.stage(
            TEACHER_SELFTRAIN,
            teacher,
            lambda: self.stages.teacher_selftrain(teacher, pretrained),
            after=(TEACHER_FINETUNE,),
        )
        if shared is not None:
            self.share_teacher_stages(shared)
        L.seed_everything(self.cfg.run.seed, verbose=False)
        student = self.new_student()
        initial_student = copy.deepcopy(student.state_dict())
        self.stage(DISTILL, student, lambda: self.stages.knowledge_transfer(student, teacher))
        if shared is not None:
            shared.publish_pseudo_labels()
        self.stage(
            REFINE, student, lambda: self.stages.student_refinement(student), after=(DISTILL,)
        )
        if baseline:
            self.supervised_baseline(initial_student)
        self._load_pending()
        self.write_report(student)
        if is_rank_zero():
            self.outcome.results = write_results(
                self.out_dir,
                self.outcome.rows,
                seed=self.cfg.run.seed,
                baseline=baseline,
                fingerprint=self.state.fingerprint,
            )
        return self.outcome

    def shared_stages(self, teacher_weights: str) -> SharedTeacherStages | None:
        """The run's view of the shared stage store; None with `run.stage_store: null`."""
        root = store_root(self.cfg.run)
        if root is None:
            return None
        fingerprint = teacher_stage_fingerprint(self.cfg, teacher_weights)
        return SharedTeacherStages(StageStore(root), fingerprint, self.out_dir)

    def reuse_teacher_stages(self, shared: SharedTeacherStages) -> None:
        """Take the teacher stages from the store when this run has none of them yet."""
        assert self.state is not None
        if any(self.state.finished(stage.name) is not None for stage in TEACHER_STAGES):
            return  # this run's own (possibly interrupted) teacher adaptation goes on
        found = shared.fetch_teacher_stages()
        if found is None:
            return
        entry, records = found
        for record in records:
            self.state.record(record)
            self.reused[record.name] = entry
            if is_rank_zero():  # an interrupted attempt of this run's own is superseded
                discard_resume_files(self.out_dir, record.name)

    def share_teacher_stages(self, shared: SharedTeacherStages) -> None:
        """Publish the finished teacher stages, and place the adapted teacher's stored
        pseudo-labels in the run folder before knowledge transfer needs them."""
        assert self.state is not None
        finished = [self.state.finished(stage.name) for stage in TEACHER_STAGES]
        if not self.reused and all(stage is not None for stage in finished):
            entry = shared.publish_teacher_stages([s for s in finished if s is not None])
            print(f"Teacher adaptation stored for runs with the same inputs: {entry}")
        cache = self.out_dir / ADAPTED_PSEUDO_LABELS
        if self.state.finished(DISTILL.name) is None and not cache.is_file():
            entry = shared.fetch_pseudo_labels()
            if entry is not None:
                print(f"Pseudo-labels of the adapted teacher reused from {entry}")

    def stage(
        self,
        stage: Stage,
        model: nn.Module,
        train: Callable[[], StageRun] | None,
        *,
        after: tuple[Stage, ...] = (),
    ) -> None:
        """Run `stage` (`train`, then evaluate `model` as its row, save, record it), or skip it
        when the run state lists it as finished.

        The evaluation's wall time adds the stages in `after` (e.g. the adapted teacher's time
        includes fine-tuning).
        """
        assert self.state is not None
        name = stage.name
        done = self.state.finished(name)
        if done is not None:
            self._skip(done, model)
            return
        self._load_pending()
        try:
            began = time.perf_counter()
            run = train() if train is not None else StageRun(name, self.out_dir / name, 0, 0.0)
            wall = time.perf_counter() - began
            rows = []
            if stage.row is not None:
                earlier = [self.state.finished(s.name) for s in after]
                total = wall + sum(s.wall_s for s in earlier if s is not None)
                rows.append(self.evaluate(stage.row, model, total))
        except Interrupted as err:  # a training step or pseudo-labelling says more, if it can
            raise err.during(f"stage {name}") from None
        checkpoint = None
        if stage.checkpoint is not None:
            checkpoint = self.save(stage.checkpoint, model, name).name
        self.state.record(FinishedStage(name, checkpoint, run.steps, run.skipped_steps, wall, rows))
        self.outcome.ran.append(name)
        if is_rank_zero():
            discard_resume_files(self.out_dir, name)

    def _skip(self, done: FinishedStage, model: nn.Module) -> None:
        assert self.state is not None
        where = ""
        if done.checkpoint is not None:
            path = self.state.checkpoint_path(done)
            self._pending[id(model)] = (model, path)
            where = f"; its weights are in {path}"
        if done.name in self.reused:
            print(f"Stage {done.name} reused from the stage store ({self.reused[done.name]})")
        else:
            print(f"Stage {done.name} finished in an earlier run ({self.state.path}){where}")
            self.resumed.append(done.name)
        if done.steps:
            self.stages.runs.append(
                StageRun(
                    done.name, self.out_dir / done.name, done.steps, done.wall_s, done.skipped_steps
                )
            )
        self.outcome.rows += done.rows

    def _load_pending(self) -> None:
        """Load the weights of skipped stages into their models before anything uses them."""
        for model, path in self._pending.values():
            model.load_state_dict(load_checkpoint(path).model.state_dict())
        self._pending.clear()

    def discard_run(self) -> None:
        """Forget an earlier run in out_dir: its state file, resumable checkpoints and
        pseudo-label caches. Model checkpoints and logs are replaced as the stages rerun."""
        if is_rank_zero():
            (self.out_dir / RUN_STATE_FILE).unlink(missing_ok=True)
            for stage in STAGES:
                discard_resume_files(self.out_dir, stage.name)
            # The caches CastStages.pseudo_label writes, complete or partial.
            for cache in self.out_dir.glob(f"{PSEUDO_LABEL_PREFIX}*.jsonl*"):
                cache.unlink()
        barrier()

    def new_student(self) -> nn.Module:
        cfg = self.cfg.student
        return build_student(
            cfg.size,
            len(self.data.categories),
            encoder=student_encoder(cfg.size, cfg.encoder),
            num_queries=cfg.num_queries,
            dropout=cfg.dropout,
            proj_dim=cfg.proj_dim,
        )

    def supervised_baseline(self, initial_state: dict) -> None:
        """The same student, initial weights and step budget, trained on D_l alone."""
        student = self.new_student()
        student.load_state_dict(initial_state)
        steps = self.cfg.student.distill_iters + self.cfg.student.refine_iters
        self.stage(
            SUPERVISED_BASELINE,
            student,
            lambda: self.stages.train(
                SUPERVISED_BASELINE.name,
                student,
                StageWeights(0.0, 0.0),
                steps=steps,
                teacher=SUPERVISED_BASELINE.teacher,
            ),
        )

    def write_report(self, student: nn.Module) -> None:
        """report.md with the table, curves and sample predictions (rank 0 writes it)."""
        if not is_rank_zero():
            return
        samples = None
        if self.data.val is not None:
            samples = save_validation_samples(
                student,
                self.data.val,
                self.out_dir / "predictions.png",
                image_size=tuple(self.cfg.data.image_size),
                top_k=self.cfg.run.eval_top_k,
                title=f"{CAST_STUDENT}, first validation images",
            )
        self.outcome.pseudo_labels = read_pseudo_label_rows(self.out_dir)
        self.outcome.report = write_report(
            self.out_dir,
            title="CAST run",
            rows=self.outcome.rows,
            stage_logs={run.name: run.metrics_csv for run in self.stages.runs if run.steps},
            predictions_png=samples,
            config=config_to_dict(self.cfg),
            notes=self.data_notes(),
            story=[
                *self.about,
                *narrative(
                    self.outcome.rows,
                    resumed=self.resumed,
                    predictions_of=None if samples is None else f"the final {CAST_STUDENT}",
                ),
            ],
            pseudo_labels=self.outcome.pseudo_labels,
            pseudo_label_png=save_pseudo_label_samples(
                self.out_dir, self.data.unlabeled, self.out_dir / "pseudo_labels.png"
            ),
        )

    def data_notes(self) -> list[str]:
        """Report lines for the records `data.on_bad_record: skip` dropped, and the steps
        skipped for a non-finite loss."""
        notes = self.data.skipped_report()
        for run in self.stages.runs:
            if run.skipped_steps:
                notes.append(
                    f"stage {run.name}: {run.skipped_steps} steps skipped for a non-finite loss"
                )
        return notes
