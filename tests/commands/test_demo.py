"""`castseg demo --smoke` runs every stage of the real code path and leaves a full run folder."""

import csv
import math
import re

from castseg.cli import main
from castseg.models.checkpoints import load_checkpoint

MODELS = (
    "teacher (zero-shot)",
    "teacher (CAST adapted)",
    "student (CAST knowledge transfer)",
    "student (CAST refined)",
    "student (supervised only)",
)


def test_demo_smoke_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--smoke", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "stand-in for MM-Grounding-DINO + SAM2" in printed
    assert "stands in for DINOv2" in printed
    assert "Generating the synthetic world" in printed
    assert "Pretraining the stand-in encoder" in printed
    assert re.search(r"Pseudo-labels of the student_family teacher \(teacher_adapted\): ", printed)
    assert re.search(r"student_family teacher \(teacher_adapted\)\s+8\s", printed)  # the table
    for name in MODELS:
        assert re.search(re.escape(name) + r"\s+\d+\.\d+\s+\S+\s+\S+\s+\d+\.\d", printed), name

    report = (out / "report.md").read_text()
    for name in MODELS:
        assert name in report
    assert "## Pseudo-labels of D_u" in report
    for picture in ("losses.png", "monitors.png", "ap.png", "predictions.png", "pseudo_labels.png"):
        assert (out / picture).is_file(), picture
    for stage in ("teacher_finetune", "teacher_selftrain", "distill", "refine"):
        assert (out / stage / "metrics.csv").is_file(), stage
    assert "train/fnr" in (out / "distill" / "metrics.csv").read_text()
    student = load_checkpoint(out / "student.pt")
    encoder = student.extra["config"]["student"]["encoder"]
    assert encoder == str(out / "demo_encoder")
    assert (
        load_checkpoint(out / "student_supervised.pt").extra["config"]["student"]["encoder"]
        == encoder
    )
    assert student.category_map.names == ("disc", "box", "triangle", "ring", "cross")
    assert (out / "pseudo_labels_teacher_adapted.jsonl").is_file()

    # A second run reuses the cached source teacher and skips every finished stage, yet prints
    # the whole table.
    assert main(["demo", "--smoke", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Using the pretrained stand-in teacher cached in" in printed
    assert "Using the pretrained stand-in encoder cached in" in printed
    assert "Reusing the synthetic world" in printed and "Generating" not in printed
    for stage in ("teacher_zero_shot", "teacher_selftrain", "refine", "supervised_baseline"):
        assert f"Stage {stage} finished in an earlier run" in printed, stage
    for name in MODELS:
        assert re.search(re.escape(name) + r"\s+\d+\.\d+\s+\S+\s+\S+\s+\d+\.\d", printed), name


def test_an_out_that_is_a_file_is_one_line_before_any_work(tmp_path, capsys):
    some_file = tmp_path / "some_file"
    some_file.write_text("")
    assert main(["demo", "--smoke", "--out", str(some_file)]) == 2
    assert capsys.readouterr().err == (
        f"castseg demo: error: --out {some_file} is a file; expected a folder\n"
    )
    assert some_file.read_text() == ""


def test_demo_smoke_runs_every_stage_in_bf16_mixed(tmp_path, capsys):
    """Lightning's bf16-mixed autocasts the forward pass; the matcher once got bf16 costs and
    L_pxl's sparse product bf16 anchors beside a float32 bank, and both crashed."""
    out = tmp_path / "demo"
    args = ["demo", "--smoke", "--out", str(out), "--no-progress"]
    assert main([*args, "--set", "run.precision=bf16-mixed"]) == 0
    printed = capsys.readouterr().out
    for name in MODELS:
        assert re.search(re.escape(name) + r"\s+\d+\.\d+\s+\S+\s+\S+\s+\d+\.\d", printed), name
    for stage in ("teacher_finetune", "teacher_selftrain", "distill", "refine"):
        with open(out / stage / "metrics.csv", newline="") as metrics:
            losses = [float(r["train/loss"]) for r in csv.DictReader(metrics) if r["train/loss"]]
        assert losses and all(math.isfinite(loss) for loss in losses), stage
    assert load_checkpoint(out / "student.pt").extra["config"]["run"]["precision"] == "bf16-mixed"
