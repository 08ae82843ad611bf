"""`castseg run` with the GroundedSAM2 teacher, loaded from local folders, on the synthetic world:
all three stages with tiny iteration counts (the --smoke path of a real VFM experiment).

The folders are laid out as the published repositories are (see conftest): the segmenter like
facebook/sam2.1-hiera-large (a `Sam2VideoModel` checkpoint with a `Sam2VideoProcessor`
processor_config.json), the detector like openmmlab-community/mm_grounding_dino_large_all."""

import yaml

from castseg.cli import main
from castseg.models.checkpoints import load_checkpoint
from castseg.models.teachers.grounded_sam2 import GroundedSAM2Teacher
from castseg.pipeline.pseudo_labels import PseudoLabelCache

SMOKE = [
    "--set", "teacher.finetune_iters=1",
    "--set", "teacher.selftrain_iters=1",
    "--set", "student.distill_iters=1",
    "--set", "student.refine_iters=1",
    "--set", "teacher.batch_size=1",
    "--set", "student.batch_size=1",
    "--set", "loss.num_points=64",
    "--set", "contrastive.num_negatives=8",
    "--set", "contrastive.max_anchors=64",
    "--set", "loss.pseudo_label_threshold=0.0",
    "--set", "run.eval_top_k=5",
    # a random tiny detector finds few boxes: far below the labeled set's density
    "--set", "run.allow_weak_pseudo_labels=true",
]  # fmt: skip


def test_run_adapts_and_distills_a_grounded_sam2_teacher(
    tmp_path, synthetic_world, tiny_detector_dir, tiny_segmenter_dir, capsys
):
    out_dir = tmp_path / "run"
    config = {
        "data": {
            "labeled_annotations": str(synthetic_world["target_val"]),
            "split": 3,
            "val_annotations": str(synthetic_world["target_val"]),
            "image_size": [56, 84],
            "num_workers": 0,
        },
        "teacher": {
            "kind": "grounded_sam2",
            "detector": str(tiny_detector_dir),
            "segmenter": str(tiny_segmenter_dir),
            # The synthetic classes are not in the tiny vocabulary: prompt with words that are.
            "prompts": ["person", "rider", "car", "bus", "traffic light"],
            "num_boxes": 4,
            "proj_dim": 16,
        },
        "student": {"size": "tiny"},
        "run": {"out_dir": str(out_dir), "accelerator": "cpu", "devices": 1},
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--no-progress", *SMOKE]) == 0
    table = capsys.readouterr().out
    for row in ("teacher (zero-shot)", "teacher (CAST adapted)", "student (CAST refined)"):
        assert row in table

    adapted = load_checkpoint(out_dir / "teacher_adapted.pt")
    assert isinstance(adapted.model, GroundedSAM2Teacher)
    assert "segmenter_neck" in adapted.model.trainable
    assert adapted.model.num_classes == 5
    cache = PseudoLabelCache.load(out_dir / "pseudo_labels_teacher_adapted.jsonl")
    assert len(cache.image_ids) == 5  # the 8 images but the 3 labeled ones, once each
    assert (out_dir / "student.pt").is_file() and (out_dir / "report.md").is_file()
