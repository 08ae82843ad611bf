"""`castseg eval --config`: the config's teacher, zero-shot, on the config's validation set."""

import yaml

from castseg.cli import main
from castseg.data.coco import CategoryMap, CocoInstanceDataset
from castseg.evaluation.coco import evaluate_coco
from castseg.models.checkpoints import save_checkpoint
from castseg.models.student import build_student
from castseg.runtime.evaluate import evaluate_model


def test_eval_config_scores_the_teacher_as_run_builds_it(tmp_path, synthetic_world, capsys):
    categories = CategoryMap.from_coco(synthetic_world["target_val"])
    teacher = build_student("tiny", len(categories)).eval()
    path = save_checkpoint(tmp_path / "t.pt", teacher, category_map=categories, image_size=(56, 56))
    config = {
        "data": {
            "labeled_annotations": str(synthetic_world["target_train"]),
            "val_annotations": str(synthetic_world["target_val"]),
            "image_size": [56, 56],
        },
        "teacher": {"kind": "student_family", "checkpoint": str(path)},
        "run": {"accelerator": "cpu"},
    }
    config_path = tmp_path / "experiment.yaml"
    config_path.write_text(yaml.safe_dump(config))
    assert main(["eval", "--config", str(config_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    ap_line = next(line for line in out.splitlines() if line.startswith("AP "))

    dataset = CocoInstanceDataset(synthetic_world["target_val"])
    expected = evaluate_model(teacher, dataset, image_size=(56, 56), progress=False)
    assert float(ap_line.split()[1]) == round(expected.metrics.ap, 2)
    assert expected.metrics == evaluate_coco(expected.results, synthetic_world["target_val"])

    del config["data"]["val_annotations"]
    config_path.write_text(yaml.safe_dump(config))
    assert main(["eval", "--config", str(config_path)]) == 2
    assert "data.val_annotations is required" in capsys.readouterr().err
    assert main(["eval", "--config", str(config_path), "--data", str(tmp_path)]) == 2
    assert "--data is only used with a CHECKPOINT" in capsys.readouterr().err
