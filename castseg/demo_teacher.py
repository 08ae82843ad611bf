"""The demo's stand-in foundation model: a `small` castseg model pretrained on the broad domain.

It stands in for MM-Grounding-DINO + SAM2 in `castseg demo`: larger than the student, pretrained
on varied data (the world's `broad` domain, appearances between source and target) and never
trained on a target image. A copy pretrained by `scripts/make_demo_teacher.py` ships in
castseg/assets/ (weights in float16); when the recipe or the world differ from the shipped one,
the demo pretrains it on first use and caches it in its run folder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from castseg.config import ExperimentConfig, apply_overrides
from castseg.data.coco import CocoInstanceDataset
from castseg.data.synthetic import GENERATOR_VERSION, WorldSpec
from castseg.io import atomic_write
from castseg.models.checkpoints import load_checkpoint, save_checkpoint
from castseg.models.student import build_student
from castseg.pipeline.experiment_data import ExperimentData
from castseg.pipeline.stages import CastStages
from castseg.training.objective import StageWeights
from castseg.training.trainer import discard_resume_files

PRETRAIN_STAGE = "teacher_source_pretrain"

SHIPPED_TEACHER = Path(__file__).parent / "assets" / "demo_teacher.pt"


@dataclass(frozen=True)
class TeacherRecipe:
    """How a stand-in is pretrained: architecture, steps, batch size, seed, and the world split
    it is trained on (never a target split)."""

    size: str = "small"
    steps: int = 1600
    batch_size: int = 8
    seed: int = 0
    split: str = "source_train"

    def fingerprint(self, world: WorldSpec) -> dict:
        """Everything the pretrained weights depend on, independent of where files live."""
        return {
            "recipe": asdict(self),
            "world": {
                "generator": GENERATOR_VERSION,
                "seed": world.seed,
                "image_size": list(world.image_size),
                self.split: world.counts[self.split],
            },
        }


def pretrain_stand_in(
    recipe: TeacherRecipe,
    annotations: Path,
    cfg: ExperimentConfig,
    out_dir: Path,
    *,
    stage: str = PRETRAIN_STAGE,
    progress: bool = True,
) -> nn.Module:
    """Train a fresh `recipe.size` model on `annotations` (the recipe's split) with L_sup
    only, with the teacher's optimiser settings (stage `stage`, logged under out_dir/stage)."""
    dataset = CocoInstanceDataset(annotations)
    cfg = apply_overrides(cfg, [f"teacher.batch_size={recipe.batch_size}"])
    cfg = replace(cfg, run=replace(cfg.run, seed=recipe.seed))
    torch.manual_seed(recipe.seed)
    model = build_student(recipe.size, len(dataset.categories))
    stages = CastStages(cfg, ExperimentData(dataset, None, None), out_dir, progress=progress)
    stages.train(stage, model, StageWeights(0.0, 0.0), steps=recipe.steps, teacher=True)
    return model


def stand_in_teacher(
    recipe: TeacherRecipe,
    world_spec: WorldSpec,
    world: dict[str, Path],
    cfg: ExperimentConfig,
    out_dir: Path,
    *,
    progress: bool = True,
) -> nn.Module:
    """The run folder's cached teacher, else the shipped one, else a freshly pretrained one."""
    fingerprint = recipe.fingerprint(world_spec)
    cache = out_dir / "teacher_source.pt"
    for path, where in ((cache, "cached in"), (SHIPPED_TEACHER, "shipped as")):
        if path.is_file():
            loaded = load_checkpoint(path)
            if loaded.extra.get("fingerprint") == fingerprint:
                print(f"Using the pretrained stand-in teacher {where} {path}")
                return loaded.model.float().train()
    print(
        f"Pretraining the stand-in teacher on {recipe.split} ({recipe.steps} steps); "
        f"it is cached in {cache} for the next run"
    )
    teacher = pretrain_stand_in(recipe, world[recipe.split], cfg, out_dir, progress=progress)
    categories = CocoInstanceDataset(world[recipe.split]).categories
    save_checkpoint(
        cache,
        teacher,
        category_map=categories,
        image_size=tuple(cfg.data.image_size),
        extra={"fingerprint": fingerprint},
    )
    discard_resume_files(out_dir, PRETRAIN_STAGE)  # the cached checkpoint supersedes them
    return teacher.train()


def write_half_precision(checkpoint: Path, target: Path) -> Path:
    """Copy a checkpoint with its floating-point weights in float16 (half the file size)."""
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    payload["state_dict"] = _half(payload["state_dict"])
    payload["hub_models"] = {
        prefix: _half(weights) for prefix, weights in payload["hub_models"].items()
    }
    with atomic_write(target) as tmp:
        torch.save(payload, tmp)
    return target


def _half(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
