"""`castseg run CONFIG` on a COCO-format dataset: --set overrides, clear config errors, the same
results from the same seed, and a run killed with SIGKILL that a rerun completes exactly."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from castseg.cli import main
from castseg.data.coco import CategoryMap
from castseg.data.validation import BadRecordWarning
from castseg.models.checkpoints import load_checkpoint, save_checkpoint
from castseg.models.student import build_student

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
    # an untrained teacher's pseudo-labels are far below the labeled set's density
    "--set", "run.allow_weak_pseudo_labels=true",
]  # fmt: skip
# Long enough a knowledge transfer to be killed in the middle of, with a checkpoint every 4
# steps; every teacher instance is a pseudo-label, so L_semi has targets; every step is logged;
# every run computes its stages itself (no shared stage store), so runs can be compared.
RESUMABLE = [
    *FAST,
    "--set", "run.stage_store=null",
    "--set", "student.distill_iters=12",
    "--set", "run.checkpoint_every=4",
    "--set", "run.log_every=1",
    "--set", "loss.pseudo_label_threshold=0.0",
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
        "teacher": {"kind": "student_family", "checkpoint": str(teacher_path)},
        "student": {"size": "tiny"},
        "run": {"out_dir": str(tmp_path / "run"), "accelerator": "cpu", "devices": 1},
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def save_teacher(path, world):
    categories = CategoryMap.from_coco(world["target_train"])
    return save_checkpoint(
        path, build_student("tiny", len(categories)), category_map=categories, image_size=(56, 56)
    )


def test_run_trains_all_stages_from_a_teacher_checkpoint(tmp_path, synthetic_world, capsys):
    config = write_config(
        tmp_path, synthetic_world, save_teacher(tmp_path / "t.pt", synthetic_world)
    )
    threads = torch.get_num_threads()
    try:
        assert main(["run", str(config), "--no-progress", *FAST, "--set", "run.threads=1"]) == 0
        assert torch.get_num_threads() == 1  # run.threads reached torch
    finally:
        torch.set_num_threads(threads)
    assert "student (CAST refined)" in capsys.readouterr().out
    student = load_checkpoint(tmp_path / "run" / "student.pt")
    assert student.extra["config"]["student"]["distill_iters"] == 1
    assert student.extra["config"]["run"]["threads"] == 1
    assert (tmp_path / "run" / "report.md").is_file()

    # Another thread count resumes the run (every stage is done), saying what that costs.
    try:
        assert main(["run", str(config), "--no-progress", *FAST, "--set", "run.threads=2"]) == 0
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert "Stage refine finished in an earlier run" in printed
    assert "resuming with 2 CPU threads where the earlier run used 1: CPU results will " in printed

    # The folder now holds that run: another config stops, --restart discards the old run.
    # (No training steps in the other config, to keep the test short.)
    other = [f"--set={key}=0" for key in ("teacher.finetune_iters", "student.distill_iters")]
    assert main(["run", str(config), "--no-progress", *FAST, *other]) == 2
    error = capsys.readouterr().err
    assert error.startswith("castseg run: error: ") and "--restart" in error
    assert "config.teacher.finetune_iters: 1 → 0" in error
    assert main(["run", str(config), "--no-progress", "--restart", *FAST, *other]) == 0
    assert "finished in an earlier run" not in capsys.readouterr().out
    state = json.loads((tmp_path / "run" / "run_state.json").read_text())
    assert state["fingerprint"]["config"]["student"]["distill_iters"] == 0
    assert state["stages"]["distill"]["steps"] == 0
    assert list(state["stages"]) == [
        "teacher_zero_shot",
        "teacher_finetune",
        "teacher_selftrain",
        "distill",
        "refine",
    ]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, synthetic_world):
    """A folder with a tiny teacher checkpoint and a config that uses it."""
    root = tmp_path_factory.mktemp("resumable")
    teacher = save_teacher(root / "teacher.pt", synthetic_world)
    return root, write_config(root, synthetic_world, teacher)


def run_args(config, out):
    return ["run", str(config), "--no-progress", *RESUMABLE, "--set", f"run.out_dir={out}"]


@pytest.fixture(scope="module")
def uninterrupted(experiment):
    """The run folder of an uninterrupted run of `experiment`."""
    root, config = experiment
    assert main(run_args(config, root / "uninterrupted")) == 0
    return root / "uninterrupted"


def results(out):
    """Every results-table row of a run (without wall times), in stage order."""
    state = json.loads((out / "run_state.json").read_text())
    rows = [row for stage in state["stages"].values() for row in stage["rows"]]
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in rows]


def assert_same_weights(a, b):
    weights_a, weights_b = (
        load_checkpoint(a).model.state_dict(),
        load_checkpoint(b).model.state_dict(),
    )
    assert weights_a.keys() == weights_b.keys()
    for name, value in weights_a.items():
        assert torch.equal(value, weights_b[name]), name


def test_the_same_seed_gives_the_same_split_pseudo_labels_and_results(experiment, uninterrupted):
    root, config = experiment
    again = root / "again"
    assert main(run_args(config, again)) == 0
    assert len(results(uninterrupted)) == 4 and results(again) == results(uninterrupted)
    for cache in ("pseudo_labels_teacher_finetune.jsonl", "pseudo_labels_teacher_adapted.jsonl"):
        lines = (uninterrupted / cache).read_text().splitlines()
        assert len(lines) == 1 + 13  # header + the 13 unlabeled images of the split
        assert any(json.loads(line)["instances"] for line in lines[1:]), cache
        assert (again / cache).read_text() == "\n".join(lines) + "\n", cache
    assert_same_weights(again / "student.pt", uninterrupted / "student.pt")
    assert_same_weights(again / "teacher_adapted.pt", uninterrupted / "teacher_adapted.pt")


def wait_for(path, process, timeout_s=300.0):
    """Poll until `path` exists; fail if the process ends or the time runs out first."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, f"the run ended (code {process.returncode}) before {path}"
        assert time.monotonic() < deadline, f"no {path} after {timeout_s} s"
        time.sleep(0.01)


def test_a_run_killed_during_knowledge_transfer_completes_with_the_same_results(
    experiment, uninterrupted, capsys
):
    root, config = experiment
    out = root / "killed"
    with (root / "killed.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "castseg.cli", *run_args(config, out)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(out / "distill" / "last.ckpt", process)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL
    state = json.loads((out / "run_state.json").read_text())
    assert "distill" not in state["stages"], "knowledge transfer finished before the kill"
    teacher_stages = ("teacher_zero_shot", "teacher_finetune", "teacher_selftrain")
    assert list(state["stages"]) == list(teacher_stages)
    untouched = [
        out / "teacher_finetune" / "metrics.csv",
        out / "teacher_selftrain" / "metrics.csv",
        out / "pseudo_labels_teacher_adapted.jsonl",
        out / "teacher_adapted.pt",
    ]
    written = {path: path.stat().st_mtime_ns for path in untouched}

    capsys.readouterr()
    assert main(run_args(config, out)) == 0
    printed = capsys.readouterr().out
    for stage in teacher_stages:
        assert f"Stage {stage} finished in an earlier run" in printed
    assert "Stage distill finished" not in printed
    assert {path: path.stat().st_mtime_ns for path in untouched} == written

    assert results(out) == results(uninterrupted)
    assert_same_weights(out / "student.pt", uninterrupted / "student.pt")
    log = (out / "distill" / "metrics.csv").read_text()
    assert log == (uninterrupted / "distill" / "metrics.csv").read_text()
    assert len(log.splitlines()) == 1 + 12
    assert not (out / "distill" / "last.ckpt").exists()


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


def test_a_persistent_non_finite_loss_stops_the_run_with_a_clear_error(
    tmp_path, synthetic_world, capsys
):
    config = write_config(
        tmp_path, synthetic_world, save_teacher(tmp_path / "t.pt", synthetic_world)
    )
    # A temperature this small overflows L_pxl to NaN from the first step of teacher fine-tuning.
    nan = ["--set", "contrastive.temperature=1e-40", "--set", "run.max_nonfinite_steps=2"]
    args = ["run", str(config), "--no-progress", *FAST, "--set", "teacher.finetune_iters=3"]
    assert main([*args, *nan]) == 2
    error = capsys.readouterr().err
    checkpoint = tmp_path / "run" / "teacher_finetune" / "last.ckpt"
    assert "castseg run: error: stage 'teacher_finetune': " in error
    assert "2 consecutive steps (steps 1-2 of 3" in error and str(checkpoint) in error
    assert torch.load(checkpoint, weights_only=True)["global_step"] == 2


def test_skipped_bad_records_are_counted_and_reported(tmp_path, synthetic_world, capsys):
    world = dict(synthetic_world)
    copy = tmp_path / "target_train"
    shutil.copytree(world["target_train"].parent, copy)
    broken = sorted((copy / "images").iterdir())[0]
    broken.write_bytes(b"not an image")
    world["target_train"] = copy / world["target_train"].name
    config = write_config(tmp_path, world, save_teacher(tmp_path / "t.pt", world))
    assert main(["run", str(config), "--no-progress", *FAST]) == 2
    assert broken.name in capsys.readouterr().err

    skip = ["--set", "data.on_bad_record=skip"]
    with pytest.warns(BadRecordWarning, match=broken.name):
        assert main(["run", str(config), "--no-progress", *FAST, *skip]) == 0
    printed = capsys.readouterr().out
    assert "1 data records skipped (data.on_bad_record: skip):\nskipped: " in printed
    assert broken.name in printed.rpartition("data records skipped")[2]  # listed at the end
    report = (tmp_path / "run" / "report.md").read_text()
    assert "1 data records skipped" in report and broken.name in report


def test_an_out_dir_that_is_a_file_is_one_line_before_any_work(tmp_path, synthetic_world, capsys):
    config = write_config(tmp_path, synthetic_world, tmp_path / "t.pt")
    some_file = tmp_path / "some_file"
    some_file.write_text("")
    assert main(["run", str(config), "--set", f"run.out_dir={some_file}"]) == 2
    assert capsys.readouterr().err == (
        f"castseg run: error: run.out_dir {some_file} is a file; expected a folder\n"
    )
    nested = some_file / "deeper" / "run"
    assert main(["run", str(config), "--set", f"run.out_dir={nested}"]) == 2
    assert capsys.readouterr().err == (
        f"castseg run: error: run.out_dir {nested} is inside {some_file}, which is a file; "
        "expected a folder\n"
    )


def test_a_run_that_fails_before_its_first_stage_does_not_block_the_corrected_rerun(
    tmp_path, synthetic_world, capsys
):
    # A validation image whose header passes the data checks but whose pixels do not decode:
    # the first run fails at its first stage, the zero-shot evaluation.
    val = tmp_path / "target_val"
    shutil.copytree(synthetic_world["target_val"].parent, val)
    broken = sorted((val / "images").iterdir())[0]
    broken.write_bytes(broken.read_bytes()[:100])
    world = {**synthetic_world, "target_val": val / "instances.json"}
    config = write_config(tmp_path, world, save_teacher(tmp_path / "t.pt", world))
    assert main(["run", str(config), "--no-progress", *FAST]) == 2
    assert broken.name in capsys.readouterr().err
    assert not (tmp_path / "run" / "run_state.json").exists()
    # The corrected rerun changes the config; no stage had finished, so nothing refuses it.
    skip = ["--set", "data.on_bad_record=skip"]
    with pytest.warns(BadRecordWarning, match=broken.name):
        assert main(["run", str(config), "--no-progress", *FAST, *skip]) == 0
    assert "student (CAST refined)" in capsys.readouterr().out


def test_ctrl_c_during_training_is_one_line_exit_130_and_the_rerun_resumes(experiment, capsys):
    root, config = experiment
    out = root / "ctrl_c"
    args = [*run_args(config, out), "--set", "student.distill_iters=40"]
    with (root / "ctrl_c.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "castseg.cli", *args], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_for(out / "distill" / "last.ckpt", process)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)
    printed = (root / "ctrl_c.log").read_text()
    assert process.returncode == 130, printed
    assert "Traceback" not in printed
    last = printed.strip().splitlines()[-1]
    assert last.startswith("castseg run: interrupted during distill at step "), printed
    assert last.endswith("; rerun the same command to resume")
    at = torch.load(out / "distill" / "last.ckpt", weights_only=True)["global_step"]
    assert f"/40 (checkpoint at step {at})" in last

    capsys.readouterr()
    assert main(args) == 0
    assert f"resuming distill from step {at}/40" in capsys.readouterr().out


def test_ctrl_c_outside_a_training_step_names_the_stage(
    tmp_path, synthetic_world, capsys, monkeypatch
):
    config = write_config(
        tmp_path, synthetic_world, save_teacher(tmp_path / "t.pt", synthetic_world)
    )

    def pressed_during_evaluation(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr("castseg.pipeline.pipeline.evaluate_model", pressed_during_evaluation)
    assert main(["run", str(config), "--no-progress", *FAST]) == 130
    assert capsys.readouterr().err.strip() == (
        "castseg run: interrupted during stage teacher_zero_shot; rerun the same command to resume"
    )
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
