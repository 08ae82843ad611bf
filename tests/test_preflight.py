"""`castseg check` makes every check `castseg run` makes before training (`castseg.preflight`, one
list for both): each problem below stops both commands with the same one-line error, exit code
2, before anything trains; `check --no-models` still reads checkpoints and folders on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from transformers import Dinov2Config, Dinov2Model
from transformers.utils import logging as hf_logging

from castseg.cli import main
from castseg.config import load_config
from castseg.data.coco import CategoryMap
from castseg.models.checkpoints import load_checkpoint, save_checkpoint
from castseg.models.student import build_student
from castseg.pipeline.fingerprints import run_fingerprint
from castseg.pipeline.run_state import RUN_STATE_FILE, FinishedStage, RunState
from castseg.pipeline.stages import state_fingerprint
from castseg.preflight import PreflightWarning


@pytest.fixture(autouse=True)
def no_loading_bars():
    """transformers' bar of loading weights, which `castseg` in a pipe (cli.main) turns off."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    yield
    if enabled:
        hf_logging.enable_progress_bar()


@pytest.fixture(scope="module")
def files(tmp_path_factory, synthetic_world) -> dict[str, Path]:
    """A config with a tiny teacher checkpoint; a teacher of other classes; an encoder folder
    with 8-pixel patches; a plain file."""
    root = tmp_path_factory.mktemp("preflight")
    categories = CategoryMap.from_coco(synthetic_world["target_train"])
    teacher = save_checkpoint(
        root / "teacher.pt",
        build_student("tiny", len(categories)),
        category_map=categories,
        image_size=(56, 56),
    )
    other = CategoryMap(categories.ids, tuple(f"not {name}" for name in categories.names))
    save_checkpoint(
        root / "other.pt",
        build_student("tiny", len(other)),
        category_map=other,
        image_size=(56, 56),
    )
    Dinov2Model(
        Dinov2Config(hidden_size=48, num_hidden_layers=4, num_attention_heads=2, patch_size=8)
    ).save_pretrained(root / "encoder_p8")
    (root / "a_file").write_text("")
    config = {
        "data": {
            "labeled_annotations": str(synthetic_world["target_train"]),
            "split": 3,
            "val_annotations": str(synthetic_world["target_val"]),
            "image_size": [56, 56],
            "num_workers": 0,
        },
        "teacher": {"kind": "student_family", "checkpoint": str(teacher)},
        "student": {"size": "tiny", "encoder": "random"},
        "run": {"out_dir": str(root / "run"), "accelerator": "cpu", "devices": 1},
    }
    (root / "c.yaml").write_text(yaml.safe_dump(config))
    return {"root": root, "config": root / "c.yaml", "teacher": teacher}


def write_state(files: dict[str, Path], out_dir: Path, *overrides: str) -> None:
    """A run state in `out_dir` of the config with `overrides`, one stage finished."""
    cfg = load_config(files["config"], overrides)
    teacher = state_fingerprint(load_checkpoint(files["teacher"]).model)
    RunState.open(out_dir, run_fingerprint(cfg, teacher)).record(
        FinishedStage("teacher_zero_shot", None)
    )


def case(name: str, files: dict[str, Path], out_dir: Path) -> tuple[list[str], str]:
    """The overrides that make problem `name`, and a part of the error it must give."""
    root = files["root"]
    if name == "changed config":
        write_state(files, out_dir, "student.distill_iters=7")
        return [], "(config.student.distill_iters: 7 → 90000): choose another run.out_dir"
    if name == "malformed run state":
        out_dir.mkdir(parents=True)
        (out_dir / RUN_STATE_FILE).write_text("{")
        return [], f"{out_dir / RUN_STATE_FILE} is not valid JSON"
    return {
        "ddp launch": (
            ["run.strategy=ddp", "run.devices=4"],
            "run.strategy=ddp with run.devices=4 and run.num_nodes=1 needs 4 processes",
        ),
        "several devices, no launcher": (
            ["run.devices=2"],
            "castseg does not start them itself: torchrun --standalone --nproc_per_node 2 -m "
            f"castseg.cli run {files['config']} --set run.strategy=ddp --set run.devices=2",
        ),
        "encoder off the patch grid": (
            [f"student.encoder={root / 'encoder_p8'}", "data.image_size=[70,70]"],
            "data.image_size: [70, 70] is not a multiple of the patch size 8 of student.encoder",
        ),
        "teacher of other classes": (
            [f"teacher.checkpoint={root / 'other.pt'}"],
            f"teacher.checkpoint {root / 'other.pt'} predicts ['not ",
        ),
        "stage store is a file": (
            [f"run.stage_store={root / 'a_file'}"],
            f"run.stage_store {root / 'a_file'} is a file; expected a folder",
        ),
    }[name]


@pytest.mark.parametrize(
    "name",
    [
        "ddp launch",
        "several devices, no launcher",
        "changed config",
        "malformed run state",
        "encoder off the patch grid",
        "teacher of other classes",
        "stage store is a file",
    ],
)
def test_check_and_run_stop_alike_before_anything_trains(name, files, tmp_path, capsys):
    errors = {}
    for command in ("check", "run"):
        out_dir = tmp_path / command
        overrides, message = case(name, files, out_dir)
        args = [command, str(files["config"]), "--no-progress", "--set", f"run.out_dir={out_dir}"]
        args += [item for override in overrides for item in ("--set", override)]
        if command == "check":
            args.append("--no-models")  # files on disk are read all the same
        state = (out_dir / RUN_STATE_FILE).read_bytes() if out_dir.is_dir() else None
        assert main(args) == 2, (command, capsys.readouterr())
        error = capsys.readouterr().err
        assert error.startswith(f"castseg {command}: error: ") and message in error, error
        assert len(error.strip().splitlines()) == 1, error
        errors[command] = error.removeprefix(f"castseg {command}: error: ")
        assert not (out_dir / "teacher_finetune").exists()  # nothing trained
        assert (out_dir / RUN_STATE_FILE).is_file() == (state is not None)
        if state is not None:
            assert (out_dir / RUN_STATE_FILE).read_bytes() == state  # nor replaced
    assert errors["check"] == errors["run"].replace(str(tmp_path / "run"), str(tmp_path / "check"))


def test_check_says_what_the_run_folder_holds_and_what_resuming_costs(files, tmp_path, capsys):
    out_dir = tmp_path / "run"
    write_state(files, out_dir)
    args = ["check", str(files["config"]), "--no-progress", "--set", f"run.out_dir={out_dir}"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"earlier run: {out_dir}: resumes the run there, which finished teacher_zero_shot\n" in (
        printed
    )
    assert "devices: 1 (cpu, strategy auto)" in printed
    assert "student: tiny, random encoder weights (student.encoder: random)" in printed
    assert main([*args, "--restart"]) == 0
    assert f"earlier run: {out_dir}: --restart discards the run there" in capsys.readouterr().out
    assert main([*args, "--seeds", "0,1"]) == 0  # every seed's folder: none holds a run yet
    printed = capsys.readouterr().out
    for seed in (0, 1):
        assert f"earlier run: {out_dir / f'seed_{seed}'}: no earlier run there" in printed


def test_a_random_encoder_nobody_asked_for_is_said_by_check_and_run(files, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / RUN_STATE_FILE).write_text("{")  # run stops after its checks
    for command in ("check", "run"):
        args = [command, str(files["config"]), "--no-progress", "--set", "student.encoder=auto"]
        with pytest.warns(PreflightWarning, match="size 'tiny' has no published pretrained "):
            assert main([*args, "--set", f"run.out_dir={tmp_path / 'out'}"]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_check_no_models_checks_a_hub_encoder_against_dinov2_patches(files, capsys):
    args = ["check", str(files["config"]), "--no-progress", "--no-models"]
    hub = ["--set", "student.encoder=facebook/dinov2-base", "--set", "teacher.kind=grounded_sam2"]
    hub += ["--set", "teacher.checkpoint=null"]
    assert main([*args, *hub]) == 0
    assert "pretrained encoder facebook/dinov2-base (not loaded: --no-models" in (
        capsys.readouterr().out
    )
    assert main([*args, *hub, "--set", "data.image_size=[70,72]"]) == 2
    assert "is not a multiple of the patch size 14 of student.encoder facebook/dinov2-base" in (
        capsys.readouterr().err
    )


def test_set_mends_a_value_the_file_gets_wrong_in_check_and_run(files, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    raw = yaml.safe_load(files["config"].read_text())
    raw["data"]["image_size"] = [120, 120]
    config.write_text(yaml.safe_dump(raw))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / RUN_STATE_FILE).write_text("{")  # run stops after its checks
    for command in ("check", "run"):
        args = [command, str(config), "--no-progress", "--set", f"run.out_dir={tmp_path / 'out'}"]
        assert main([*args, "--set", "data.image_size=[112,112]"]) == 2
        assert "run_state.json is not valid JSON" in capsys.readouterr().err  # past the config
        assert main(args) == 2
        assert capsys.readouterr().err.startswith(
            f"castseg {command}: error: {config}: data.image_size: [120, 120] is not a multiple"
        )
        assert (
            main(
                [*args, "--set", "data.image_size=[112,112]", "--set", "data.image_size=[126,130]"]
            )
            == 2
        )
        assert capsys.readouterr().err.startswith(
            f"castseg {command}: error: --set data.image_size=[126,130]: data.image_size: "
        )
