"""`castseg run CONFIG` on a COCO-format dataset, with --set overrides and clear config errors."""

import pytest
import yaml

from castseg.cli import main
from castseg.data.coco import CategoryMap
from castseg.models.student import build_student
from castseg.training.checkpoints import load_checkpoint, save_checkpoint

FAST = [
    "--set", "teacher.finetune_iters=1",
    "--set", "teacher.selftrain_iters=1",
    "--set", "student.distill_iters=1",
    "--set", "student.refine_iters=1",
    "--set", "teacher.batch_size=2",
    "--set", "student.batch_size=2",
    "--set", "loss.num_points=64",
    "--set", "contrastive.num_negatives=8",
    "--set", "run.eval_top_k=5",
]  # fmt: skip


def write_config(tmp_path, world, teacher_path):
    config = {
        "data": {
            "labeled_annotations": str(world["target_train"]),
            "split": 3,
            "val_annotations": str(world["target_val"]),
            "image_size": [56, 56],
            "num_workers": 0,
        },
        "teacher": {"size": "tiny", "checkpoint": str(teacher_path)},
        "student": {"size": "tiny"},
        "run": {"out_dir": str(tmp_path / "run"), "accelerator": "cpu", "devices": 1},
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_run_trains_all_stages_from_a_teacher_checkpoint(tmp_path, synthetic_world, capsys):
    categories = CategoryMap.from_coco(synthetic_world["target_train"])
    teacher_path = save_checkpoint(
        tmp_path / "teacher.pt",
        build_student("tiny", len(categories)),
        category_map=categories,
        image_size=(56, 56),
    )
    config = write_config(tmp_path, synthetic_world, teacher_path)
    assert main(["run", str(config), "--no-progress", *FAST]) == 0
    assert "student (CAST refined)" in capsys.readouterr().out
    student = load_checkpoint(tmp_path / "run" / "student.pt")
    assert student.extra["config"]["student"]["distill_iters"] == 1
    assert (tmp_path / "run" / "report.md").is_file()


def test_run_reports_config_errors_by_key(tmp_path, synthetic_world, capsys):
    config = write_config(tmp_path, synthetic_world, tmp_path / "missing.pt")
    assert main(["run", str(config), "--set", "student.lrr=1"]) == 2
    assert "student.lrr" in capsys.readouterr().err
    assert main(["run", str(config)]) == 2
    assert "missing.pt" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["data.image_size=[56]", "contrastive.mode=nearest"])
def test_run_rejects_bad_values(tmp_path, synthetic_world, capsys, bad):
    config = write_config(tmp_path, synthetic_world, tmp_path / "t.pt")
    assert main(["run", str(config), "--set", bad]) == 2
    assert bad.split("=")[0] in capsys.readouterr().err
