"""The stages of a CAST run, each declared once, in the order `CastPipeline.run` goes through them.

    stage                 what it does                                   checkpoint
    teacher_zero_shot     the pretrained teacher, evaluated             (none)
    teacher_finetune      θ_T^l                                          teacher_finetuned.pt
    teacher_selftrain     pseudo-labels of θ_T^l, reset, self-training   teacher_adapted.pt
    distill               knowledge transfer                             student_distilled.pt
    refine                student refinement                             student.pt
    supervised_baseline   (with `baseline`) the student on D_l alone     student_supervised.pt

The pipeline, `castseg check`'s plan, the report, the stage store, the seed and grid summaries and
the pseudo-label quality read the names, files and rows from here.
"""

from __future__ import annotations

from dataclasses import dataclass

# The pseudo-label caches of a run folder are `<PSEUDO_LABEL_PREFIX><teacher>.jsonl`.
PSEUDO_LABEL_PREFIX = "pseudo_labels_"


@dataclass(frozen=True)
class Stage:
    """One stage of a CAST run.

    name: its name in the run state, its log folder and messages.
    checkpoint: the model checkpoint it leaves in the run folder; None for a stage that trains
        nothing (it only evaluates).
    row: the results-table row of the model it evaluates; None when it evaluates none.
    description: what that row is, for the report's opening sentences.
    teacher: a teacher stage (teacher adaptation), shared through the stage store.
    pseudo_labels: the pseudo-label cache (`<run folder>/<pseudo_labels>.jsonl`) its model makes
        of D_u for the next stage; None when it makes none.
    baseline: run only with `baseline` (`castseg run --baseline`).
    """

    name: str
    checkpoint: str | None
    row: str | None
    description: str | None
    teacher: bool
    pseudo_labels: str | None = None
    baseline: bool = False

    @property
    def evaluated(self) -> bool:
        return self.row is not None

    @property
    def trains(self) -> bool:
        return self.checkpoint is not None


TEACHER_ZERO_SHOT = Stage(
    "teacher_zero_shot",
    None,
    "teacher (zero-shot)",
    "the pretrained teacher before any training on this data",
    teacher=True,
)
TEACHER_FINETUNE = Stage(
    "teacher_finetune",
    "teacher_finetuned.pt",
    None,
    None,
    teacher=True,
    pseudo_labels=f"{PSEUDO_LABEL_PREFIX}teacher_finetune",
)
TEACHER_SELFTRAIN = Stage(
    "teacher_selftrain",
    "teacher_adapted.pt",
    "teacher (CAST adapted)",
    "the teacher after CAST stage 1 (fine-tuned on the labeled images, then self-trained from "
    "its pretrained weights on them and on its pseudo-labels)",
    teacher=True,
    pseudo_labels=f"{PSEUDO_LABEL_PREFIX}teacher_adapted",
)
DISTILL = Stage(
    "distill",
    "student_distilled.pt",
    "student (CAST knowledge transfer)",
    "the student distilled from the adapted teacher (stage 2)",
    teacher=False,
)
REFINE = Stage(
    "refine",
    "student.pt",
    "student (CAST refined)",
    "that student refined on the labeled images (stage 3)",
    teacher=False,
)
SUPERVISED_BASELINE = Stage(
    "supervised_baseline",
    "student_supervised.pt",
    "student (supervised only)",
    "the same student, from the same initial weights and with the same number of steps, "
    "trained on the labeled images alone",
    teacher=False,
    baseline=True,
)

# Every stage, in the order a run goes through them.
STAGES = (
    TEACHER_ZERO_SHOT,
    TEACHER_FINETUNE,
    TEACHER_SELFTRAIN,
    DISTILL,
    REFINE,
    SUPERVISED_BASELINE,
)
TEACHER_STAGES = tuple(stage for stage in STAGES if stage.teacher)


def pseudo_label_teacher(cache_stem: str) -> str:
    """The teacher a pseudo-label cache is named for: "teacher_adapted" for
    "pseudo_labels_teacher_adapted"."""
    return cache_stem.removeprefix(PSEUDO_LABEL_PREFIX)
