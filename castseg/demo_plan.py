"""The demo's plans (full and smoke: world size, labeled images, the stand-ins' recipes), the text
that says what its stand-ins are, and its config pointed at the generated world. What the
stand-ins stand in for: `castseg.commands.demo`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from castseg.config import ExperimentConfig, apply_overrides, builtin_config, load_config
from castseg.data.synthetic import WorldSpec
from castseg.demo_encoder import encoder_recipe
from castseg.demo_teacher import TeacherRecipe

STAND_IN = (
    "The demo's teacher is a stand-in for MM-Grounding-DINO + SAM2: a larger castseg model "
    "pretrained with labels on the synthetic world's *broad* domain (appearances spread between "
    "the source and the target domain, never a target image), as a foundation model is "
    "pretrained on varied data but not on your dataset. The student's encoder (for the CAST "
    "student and the supervised-only one alike) stands in for DINOv2: the encoder of a tiny "
    "model pretrained on the *source* domain only."
)


@dataclass(frozen=True)
class DemoPlan:
    """One demo run: images per world split, labeled target images, the recipes of the teacher
    and of the student's encoder."""

    counts: dict[str, int]
    labeled: int
    teacher: TeacherRecipe
    encoder: TeacherRecipe
    overrides: tuple[str, ...] = ()

    @property
    def world(self) -> WorldSpec:
        return WorldSpec(counts=dict(self.counts))


FULL = DemoPlan(
    counts={"source_train": 240, "broad_train": 480, "target_train": 240, "target_val": 60},
    labeled=24,
    teacher=TeacherRecipe(steps=1200, split="broad_train"),
    encoder=encoder_recipe(),
)
SMOKE = DemoPlan(
    counts={"source_train": 12, "broad_train": 12, "target_train": 12, "target_val": 4},
    labeled=4,
    teacher=TeacherRecipe(steps=2, batch_size=2, split="broad_train"),
    encoder=TeacherRecipe(size="tiny", steps=2, batch_size=2),
    overrides=(
        "teacher.finetune_iters=2",
        "teacher.selftrain_iters=2",
        "student.distill_iters=2",
        "student.refine_iters=2",
        "teacher.batch_size=2",
        "student.batch_size=2",
        "loss.num_points=256",
        "contrastive.num_negatives=16",
        "contrastive.max_anchors=64",
        "run.eval_top_k=10",
        # a teacher pretrained for 2 steps labels little or nothing: go on, the smoke run only
        # exercises the code path
        "run.allow_weak_pseudo_labels=true",
    ),
)


def demo_config(
    out: Path, world: dict[str, Path], plan: DemoPlan, overrides: list[str]
) -> ExperimentConfig:
    """The built-in demo config pointed at the generated world, then the user's overrides."""
    paths = [
        f"data.labeled_annotations={world['target_train']}",
        f"data.split={plan.labeled}",
        "data.unlabeled=null",
        f"data.val_annotations={world['target_val']}",
        f"run.out_dir={out}",
    ]
    cfg = load_config(builtin_config("demo"), [*paths, *plan.overrides])
    return apply_overrides(cfg, overrides)
