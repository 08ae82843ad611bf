"""`castseg check CONFIG` on every shipped config, against fixture data laid out where each config
looks for it (the demo's world where `castseg demo` writes it, the paper datasets where `castseg
convert` writes them): it validates and prints the plan, writing nothing; bad teachers, image
sizes and run folders are one-line errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from castseg.cli import main
from castseg.config import builtin_config, builtin_config_names, load_config
from castseg.data.splits import write_id_list
from castseg.data.synthetic import WorldSpec, generate_world
from castseg.demo_teacher import SHIPPED_TEACHER

# What `castseg convert` writes for each paper dataset (castseg/data/paper_splits.py names the
# split folders), relative to the working directory as in the configs.
PAPER_LAYOUT = {
    "cityscapes": ("data/cityscapes/cityscapes_train.json", "data/cityscapes/cityscapes_val.json"),
    "ade20k": (
        "data/ade20k/ade20k_instance_train.json",
        "data/ade20k/ade20k_instance_val.json",
    ),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A world where `castseg demo` puts it, with more target images than the demo labels."""
    root = tmp_path_factory.mktemp("check")
    spec = WorldSpec(seed=0, counts={"target_train": 26, "target_val": 2})
    return generate_world(root / "runs" / "demo" / "world", spec)


def lay_out_paper_data(cwd: Path, config: str, world: dict[str, Path]) -> list[str]:
    """Copy the world to the paper config's annotation and split paths under `cwd`; return the
    overrides of its absolute image roots (/data/...)."""
    cfg = load_config(builtin_config(config))
    train, val = PAPER_LAYOUT[config.split("_")[0]]
    for source, target in ((world["target_train"], train), (world["target_val"], val)):
        (cwd / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, cwd / target)
    ids = list(range(1, 27))
    write_id_list(cwd / cfg.data.labeled_ids, ids[:4])
    write_id_list(cwd / cfg.data.unlabeled_ids, ids[4:])
    images, val_images = (world[part].parent / "images" for part in ("target_train", "target_val"))
    return [
        "--set", f"data.image_root={images}",
        "--set", f"data.unlabeled_image_root={images}",
        "--set", f"data.val_image_root={val_images}",
    ]  # fmt: skip


@pytest.mark.parametrize("name", builtin_config_names())
def test_check_passes_every_shipped_config_on_data_where_it_looks(name, world, monkeypatch, capsys):
    cwd = world["target_train"].parents[4]  # the folder holding runs/demo/world
    monkeypatch.chdir(cwd)
    config = str(builtin_config(name))
    if name == "demo":
        # The config names the shipped teacher relative to the repository root.
        args = ["--set", f"teacher.checkpoint={SHIPPED_TEACHER}"]
    elif name == "custom_coco":
        # Its paths are placeholders for the user's data: point them at the world.
        args = [
            "--set", f"data.labeled_annotations={world['target_train']}",
            "--set", f"data.image_root={world['target_train'].parent / 'images'}",
            "--set", f"data.unlabeled={world['target_train'].parent / 'images'}",
            "--set", f"data.val_annotations={world['target_val']}",
            "--set", f"data.val_image_root={world['target_val'].parent / 'images'}",
        ]  # fmt: skip
    else:
        args = lay_out_paper_data(cwd, name, world)
    if load_config(config).teacher.kind == "grounded_sam2":
        args.append("--no-models")  # hub weights: no download here (loading is tested below)
    out_dir = cwd / load_config(config).run.out_dir
    assert main(["check", config, "--no-progress", *args]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert f"config {config}: valid" in printed
    for stage in ("teacher_zero_shot", "teacher_finetune", "teacher_selftrain", "refine"):
        assert stage in printed
    assert "no earlier run there" in printed
    if name == "demo":
        assert "data: 24 labeled, 2 unlabeled, 2 val images; 5 classes" in printed
        assert "teacher: student_family, loads" in printed
        assert "50 steps × 4 labeled images" in printed  # teacher.finetune_iters, batch_size
        assert "1100 steps × 4 labeled + 4 pseudo-labeled images" in printed  # distill
    else:
        assert "1000 steps × 4 labeled images" in printed  # the paper's teacher fine-tuning
    # check trains nothing and writes no run state (the demo's run folder holds its world)
    assert not (out_dir / "run_state.json").exists() and not (out_dir / "teacher_finetune").exists()


def test_a_teacher_that_cannot_load_is_one_line_naming_it(world, tmp_path, capsys):
    empty = tmp_path / "not_a_model"
    empty.mkdir()
    args = [
        "check", str(builtin_config("custom_coco")), "--no-progress",
        "--set", f"data.labeled_annotations={world['target_train']}",
        "--set", "data.image_root=null",
        "--set", "data.unlabeled=null",
        "--set", f"data.val_annotations={world['target_val']}",
        "--set", "data.val_image_root=null",
        "--set", f"teacher.detector={empty}",
    ]  # fmt: skip
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"castseg check: error: the detector {empty} is not a model directory")
    assert len(error.strip().splitlines()) == 1


def test_check_catches_what_run_would_find_late(world, tmp_path, capsys):
    demo = ["check", str(builtin_config("demo")), "--no-progress", "--set"]
    data = f"data.labeled_annotations={world['target_train']}"
    teacher = f"teacher.checkpoint={SHIPPED_TEACHER}"
    a_file = tmp_path / "some_file"
    a_file.write_text("")
    cases = {
        "data.image_size=[250,250]": "data.image_size: [250, 250] is not a multiple of the "
        "student's patch size 14; nearest valid sizes: [238, 238] or [252, 252]",
        f"run.out_dir={a_file}": f"run.out_dir {a_file} is a file; expected a folder",
        "teacher.checkpoint=null": "teacher.checkpoint: kind 'student_family' needs",
    }
    for override, message in cases.items():
        args = [*demo, data, "--set", f"data.val_annotations={world['target_val']}"]
        assert main([*args, "--set", teacher, "--set", override]) == 2, override
        error = capsys.readouterr().err
        assert message in error, error
        assert len(error.strip().splitlines()) == 1


def test_warnings_are_printed_as_their_message_alone(world, tmp_path):
    copy = tmp_path / "target_train"
    shutil.copytree(world["target_train"].parent, copy)
    broken = sorted((copy / "images").iterdir())[0]
    broken.write_bytes(b"not an image")
    args = [
        "check", str(builtin_config("demo")), "--no-progress",
        "--set", f"data.labeled_annotations={copy / 'instances.json'}",
        "--set", f"data.val_annotations={world['target_val']}",
        "--set", "data.split=4",
        "--set", "data.on_bad_record=skip",
        "--set", f"teacher.checkpoint={SHIPPED_TEACHER}",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "castseg.cli", *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    warning = next(line for line in done.stderr.splitlines() if broken.name in line)
    assert warning.startswith("castseg: warning: ") and "dropped 1 record(s)" in warning
    # Neither the source file and line of the warning nor the code on it.
    assert ".py:" not in done.stderr and "CocoInstanceDataset(" not in done.stderr


def test_no_models_catches_a_label_map_typo_before_any_model_loads(world, capsys):
    args = [
        "check", str(builtin_config("custom_coco")), "--no-progress", "--no-models",
        "--set", f"data.labeled_annotations={world['target_train']}",
        "--set", "teacher.kind=hf_universal",
        "--set", "teacher.model=some/hub-model",
        "--set", "teacher.label_map=[disc]",
    ]  # fmt: skip
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "--set teacher.label_map=[disc]: teacher.label_map entry 'disc' must look like" in error
    assert len(error.strip().splitlines()) == 1
