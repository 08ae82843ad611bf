"""Fixtures shared across the test suite."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from castseg.data.coco import CategoryMap
from castseg.data.synthetic import WorldSpec, generate_world
from castseg.models.checkpoints import save_checkpoint
from castseg.models.student import build_student


@pytest.fixture(scope="session")
def synthetic_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small synthetic world (seed 0, 112 × 112): split name → instances.json."""
    spec = WorldSpec(seed=0, counts={"source_train": 16, "target_train": 16, "target_val": 8})
    return generate_world(tmp_path_factory.mktemp("synthetic") / "world", spec)


# Overrides that make every stage of a run one step (multi-run and stage-store tests).
FAST = [
    "teacher.finetune_iters=1",
    "teacher.selftrain_iters=1",
    "student.distill_iters=1",
    "student.refine_iters=1",
    "teacher.batch_size=2",
    "student.batch_size=2",
    "loss.num_points=64",
    "contrastive.num_negatives=8",
    "run.eval_top_k=5",
    # a one-step teacher of random weights labels nothing; the density stop would end the run
    "run.allow_weak_pseudo_labels=true",
]


@pytest.fixture
def fast_args():
    """FAST as command-line arguments."""
    return [arg for item in FAST for arg in ("--set", item)]


@pytest.fixture
def tiny_experiment(tmp_path, synthetic_world):
    """(config path, run folder, store folder): a student_family teacher of random weights."""
    categories = CategoryMap.from_coco(synthetic_world["target_train"])
    teacher = save_checkpoint(
        tmp_path / "teacher.pt",
        build_student("tiny", len(categories)),
        category_map=categories,
        image_size=(56, 56),
    )
    config = {
        "data": {
            "labeled_annotations": str(synthetic_world["target_train"]),
            "split": 3,
            "val_annotations": str(synthetic_world["target_val"]),
            "image_size": [56, 56],
            "num_workers": 0,
        },
        "teacher": {"kind": "student_family", "checkpoint": str(teacher)},
        "student": {"size": "tiny"},
        "run": {
            "out_dir": str(tmp_path / "run"),
            "accelerator": "cpu",
            "devices": 1,
            "stage_store": str(tmp_path / "store"),
        },
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, tmp_path / "run", tmp_path / "store"
