"""Resumable stages and the run state: a stage that crashes after a checkpoint and is rerun ends
exactly where an uninterrupted one does; a persistent non-finite loss stops the stage with a
clear error and a checkpoint of the last good weights; the run state skips finished stages and
refuses a folder of another run."""

import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from castseg.config import config_from_dict
from castseg.data.coco import CocoInstanceDataset
from castseg.models.student import build_student
from castseg.pipeline.fingerprints import run_fingerprint
from castseg.pipeline.run_state import (
    RUN_STATE_FILE,
    FinishedStage,
    RunState,
    RunStateMismatchError,
)
from castseg.result_tables import ModelRow
from castseg.training.objective import StageWeights
from castseg.training.optim import OptimSettings
from castseg.training.trainer import (
    NonFiniteLossError,
    StageCheckpoint,
    resume_checkpoint,
    train_stage,
)


class Flaky(nn.Module):
    """A tiny student whose n-th forward call (1-based) can crash, return NaN mask logits, or
    return logits whose gradients are NaN. `before_nan` is a copy of the weights at the first
    NaN call."""

    def __init__(self, *, crash_at: int = 0, nan_at=(), nan_grad_at=()) -> None:
        super().__init__()
        self.inner = build_student("tiny", 5)
        self.crash_at, self.nan_at, self.nan_grad_at = crash_at, set(nan_at), set(nan_grad_at)
        self.calls = 0
        self.before_nan: dict[str, torch.Tensor] | None = None

    def forward(self, images):
        self.calls += 1
        if self.calls == self.crash_at:
            raise RuntimeError("simulated crash")
        pred = self.inner(images)
        if self.calls in self.nan_at:
            if self.before_nan is None:
                self.before_nan = {k: v.clone() for k, v in self.state_dict().items()}
            pred.mask_logits = pred.mask_logits * float("nan")
        if self.calls in self.nan_grad_at:
            pred.mask_logits.register_hook(lambda grad: grad * float("nan"))
        return pred

    def parameter_groups(self):
        return self.inner.parameter_groups()


@pytest.fixture(scope="module")
def labeled(synthetic_world):
    return CocoInstanceDataset(synthetic_world["target_train"])


def config(world, **run):
    return config_from_dict(
        {
            "data": {
                "labeled_annotations": str(world["target_train"]),
                "image_size": [56, 56],
                "num_workers": 0,
            },
            "loss": {"num_points": 64},
            "contrastive": {"num_negatives": 8, "max_anchors": 32},
            "run": {"accelerator": "cpu", "devices": 1, "log_every": 1, **run},
        }
    )


def train(model, cfg, labeled, out_dir, *, steps, weights, run_key="run-a"):
    return train_stage(
        "stage",
        model,
        cfg,
        num_classes=5,
        labeled=labeled,
        pseudo_labeled=None,
        weights=weights,
        steps=steps,
        optim=OptimSettings.for_student(cfg.student),
        contrastive=cfg.contrastive,
        batch_size=2,
        out_dir=out_dir,
        progress=False,
        run_key=run_key,
    )


def test_a_stage_resumed_after_a_crash_ends_like_an_uninterrupted_one(
    synthetic_world, labeled, tmp_path
):
    cfg = config(synthetic_world, checkpoint_every=2)
    weights = StageWeights(0.0, 0.2)  # L_pxl: dropout, strong views, anchors and negatives
    torch.manual_seed(0)
    reference = Flaky()
    train(reference, cfg, labeled, tmp_path / "a", steps=6, weights=weights)

    torch.manual_seed(0)
    # Two forward calls per step (weak and strong view): call 9 is step 5, after the
    # checkpoint of step 4.
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(Flaky(crash_at=9), cfg, labeled, tmp_path / "b", steps=6, weights=weights)
    checkpoint = resume_checkpoint(tmp_path / "b", "stage")
    assert torch.load(checkpoint, weights_only=True)["global_step"] == 4

    with pytest.raises(ValueError, match="written by another run"):
        train(Flaky(), cfg, labeled, tmp_path / "b", steps=6, weights=weights, run_key="run-b")
    torch.manual_seed(1)  # other initial weights: the resumed stage must take the checkpoint's
    resumed = Flaky()
    run = train(resumed, cfg, labeled, tmp_path / "b", steps=6, weights=weights)
    assert resumed.calls == 4  # steps 5 and 6 only

    assert run.steps == 6
    for name, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    # The log of the resumed stage holds every step, as the uninterrupted one does.
    log_a = (tmp_path / "a" / "stage" / "metrics.csv").read_text()
    assert (tmp_path / "b" / "stage" / "metrics.csv").read_text() == log_a
    assert len(log_a.splitlines()) == 7
    assert not (tmp_path / "b" / "stage" / "metrics.before_resume.csv").exists()

    # Killed after its last step but before the run recorded it, the stage only reloads.
    again = Flaky()
    train(again, cfg, labeled, tmp_path / "b", steps=6, weights=weights)
    assert again.calls == 0
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in reference.state_dict().items())
    assert (tmp_path / "b" / "stage" / "metrics.csv").read_text() == log_a


def test_a_checkpoint_is_in_place_only_once_its_steps_log_row_can_be_on_disk(tmp_path):
    """Lightning logs a step's row after `on_train_batch_end`, where the checkpoint is taken. Put
    in place there, a kill before the row is written resumes past a row that is never logged (a
    failure once seen in CI); the checkpoint waits for the next hook instead."""

    def save_checkpoint(path, weights_only):
        Path(path).write_bytes(b"step 4")

    trainer = SimpleNamespace(is_global_zero=True, save_checkpoint=save_checkpoint)
    path = tmp_path / "last.ckpt"
    callback = StageCheckpoint(path, identity={}, every=1, max_nonfinite=3)
    callback.save(trainer)
    assert not path.exists()
    callback.on_train_batch_start(trainer, None, None, 4)
    assert path.read_bytes() == b"step 4"
    assert list(tmp_path.iterdir()) == [path]


def test_an_unreadable_checkpoint_is_an_error_not_a_fresh_start(synthetic_world, labeled, tmp_path):
    checkpoint = resume_checkpoint(tmp_path, "stage")
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"PK\x03\x04 truncated")
    weights = StageWeights(0.0, 0.0)
    with pytest.raises(ValueError, match="cannot be read"):
        train(Flaky(), config(synthetic_world), labeled, tmp_path, steps=2, weights=weights)


def test_a_persistent_non_finite_loss_stops_the_stage_with_a_checkpoint(
    synthetic_world, labeled, tmp_path, caplog
):
    cfg = config(synthetic_world, max_nonfinite_steps=3, checkpoint_every=100)
    # One forward call per step: step 2 has NaN gradients, step 3 is fine, 4-6 have NaN losses.
    model = Flaky(nan_grad_at={2}, nan_at={4, 5, 6})
    with (
        caplog.at_level(logging.WARNING, logger="castseg.training.module"),
        pytest.raises(NonFiniteLossError) as stopped,
    ):
        train(model, cfg, labeled, tmp_path, steps=10, weights=StageWeights(0.0, 0.0))

    checkpoint_path = resume_checkpoint(tmp_path, "stage")
    message = str(stopped.value)
    for part in ("stage 'stage'", "3 consecutive steps", "steps 4-6 of 10", "after step 3"):
        assert part in message, message
    assert str(checkpoint_path) in message
    skipped = [r.getMessage() for r in caplog.records if "step skipped" in r.getMessage()]
    assert len(skipped) == 4
    assert "gradient" in skipped[0] and all("loss" in m for m in skipped[1:])

    checkpoint = torch.load(checkpoint_path, weights_only=True)
    assert checkpoint["global_step"] == 6
    assert checkpoint["castseg_module"] == {
        "skipped_steps": 4,
        "nonfinite_streak": 3,
        "last_finite_step": 3,
        "memory_bank": None,
    }
    # The saved weights are those after step 3: the skipped steps changed nothing.
    assert model.before_nan is not None
    for name, value in model.before_nan.items():
        saved = checkpoint["state_dict"][f"model.{name}"]
        assert torch.equal(saved, value), name
        assert torch.isfinite(saved).all() if saved.is_floating_point() else True


def row(name: str, ap: float) -> ModelRow:
    return ModelRow(name, 10, ap, 2 * ap, 1.5, {"disc": ap, "box": math.nan})


def test_run_state_records_stages_and_refuses_another_config(synthetic_world, tmp_path):
    cfg = config(synthetic_world, out_dir=str(tmp_path), seed=0)
    state = RunState.open(tmp_path, run_fingerprint(cfg, "teacher-1"))
    assert not (tmp_path / RUN_STATE_FILE).exists()  # nothing is written before a stage ends
    (tmp_path / "student.pt").write_bytes(b"weights")
    state.record(FinishedStage("zero_shot", None, rows=[row("teacher", math.nan)]))
    assert (tmp_path / RUN_STATE_FILE).is_file()
    state.record(FinishedStage("refine", "student.pt", 4, 1, 2.5, [row("student", 12.5)]))
    state.record(FinishedStage("distill", "student_distilled.pt", 8))

    # Where the run writes, how often it logs or checkpoints: not part of the fingerprint.
    neutral = config(synthetic_world, out_dir="elsewhere", log_every=7, checkpoint_every=3)
    reopened = RunState.open(tmp_path, run_fingerprint(neutral, "teacher-1"))
    assert reopened.key == state.key
    refine = reopened.finished("refine")
    assert refine is not None and (refine.steps, refine.skipped_steps, refine.wall_s) == (4, 1, 2.5)
    assert refine.rows[0].ap == 12.5 and math.isnan(refine.rows[0].per_class["box"])
    zero_shot = reopened.finished("zero_shot")
    assert zero_shot is not None and math.isnan(zero_shot.rows[0].ap)
    assert reopened.finished("distill") is None  # its checkpoint is gone: it reruns
    assert reopened.finished("teacher_finetune") is None

    with pytest.raises(RunStateMismatchError, match="config.run.matmul_precision: 'auto' → "):
        RunState.open(
            tmp_path, run_fingerprint(config(synthetic_world, matmul_precision="high"), "teacher-1")
        )
    with pytest.raises(RunStateMismatchError) as mismatch:
        RunState.open(tmp_path, run_fingerprint(config(synthetic_world, seed=1), "teacher-2"))
    message = str(mismatch.value)
    assert "config.run.seed: 0 → 1" in message and "teacher: 'teacher-1' → 'teacher-2'" in message
    assert "--restart" in message and "run.out_dir" in message
    # A key that only one side has (e.g. added by a newer castseg) counts, even when it is None.
    newer = run_fingerprint(cfg, "teacher-1")
    newer["config"]["run"]["new_key"] = None
    with pytest.raises(RunStateMismatchError, match=r"config.run.new_key: \(absent\) → None"):
        RunState.open(tmp_path, newer)


def test_a_state_with_no_finished_stage_never_blocks_a_changed_config(synthetic_world, tmp_path):
    # What a run that failed before its first stage ended may have left (an older castseg wrote
    # the state at once): a corrected rerun takes the folder over instead of asking for --restart.
    first = RunState.open(tmp_path, run_fingerprint(config(synthetic_world), "teacher-1"))
    first._write()
    corrected = run_fingerprint(config(synthetic_world, seed=1), "teacher-1")
    state = RunState.open(tmp_path, corrected)
    assert state.fingerprint["config"]["run"]["seed"] == 1
    state.record(FinishedStage("zero_shot", None))
    with pytest.raises(RunStateMismatchError):
        RunState.open(tmp_path, run_fingerprint(config(synthetic_world), "teacher-1"))


def test_a_damaged_run_state_is_an_error_naming_the_file(synthetic_world, tmp_path):
    fingerprint = run_fingerprint(config(synthetic_world), "teacher-1")
    path = tmp_path / RUN_STATE_FILE
    path.write_text('{"format": "castseg-run-state-v1", "fing')
    with pytest.raises(ValueError, match="not valid JSON"):
        RunState.open(tmp_path, fingerprint)
    RunState.open(tmp_path / "fresh", fingerprint).record(FinishedStage("zero_shot", None))
    data = json.loads((tmp_path / "fresh" / RUN_STATE_FILE).read_text())
    data["stages"]["refine"] = {"steps": 3}
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"stage 'refine' is not a valid record"):
        RunState.open(tmp_path, fingerprint)


def test_a_rerun_may_change_the_thread_count_and_is_told_what_that_costs(synthetic_world, tmp_path):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        first = RunState.open(tmp_path, run_fingerprint(config(synthetic_world), "teacher-1"))
        first.record(FinishedStage("zero_shot", None))
        assert first.threads_note() is None
        torch.set_num_threads(1)  # what --set run.threads=1 does
        rerun = run_fingerprint(config(synthetic_world, threads=1), "teacher-1")
        resumed = RunState.open(tmp_path, rerun)  # not a changed config
        assert resumed.key == first.key  # so its interrupted stage resumes from its checkpoint
        assert resumed.finished("zero_shot") is not None
        assert resumed.threads_note() == (
            "resuming with 1 CPU threads where the earlier run used 2: CPU results will differ "
            "from an uninterrupted run"
        )
    finally:
        torch.set_num_threads(threads)


def test_without_the_teacher_s_weights_only_the_config_is_compared(synthetic_world, tmp_path):
    # `castseg check --no-models` with a hub teacher: its weights are not there to digest.
    fingerprint = run_fingerprint(config(synthetic_world), "teacher-1")
    RunState.open(tmp_path, fingerprint).record(FinishedStage("zero_shot", None))
    unknown = run_fingerprint(config(synthetic_world), "")
    assert RunState.open(tmp_path, unknown, teacher_known=False).stage_names == ["zero_shot"]
    with pytest.raises(RunStateMismatchError, match=r"\(config.run.seed: 0 → 1\)"):
        RunState.open(
            tmp_path, run_fingerprint(config(synthetic_world, seed=1), ""), teacher_known=False
        )
