"""`castseg ablate`: a 2-variant × 2-seed smoke grid that adapts the teacher once per seed,
the table's rows, when the teacher columns appear, and bad input stopped before anything runs."""

import json

import pytest

from castseg.cli import main
from castseg.config import ConfigError, load_config
from castseg.experiments.grid import plan_grid, teachers_differ
from castseg.experiments.variants import parse_axis


def test_a_student_only_grid_adapts_the_teacher_once_per_seed(tiny_experiment, fast_args, capsys):
    config, out, _ = tiny_experiment
    args = ["ablate", str(config), "--no-progress", *fast_args, "--seeds", "0,1"]
    assert main([*args, "--vary", "student.lr_decoder=5e-5,1e-4"]) == 0
    printed = capsys.readouterr().out
    ablation = json.loads((out / "ablation.json").read_text())
    assert ablation["teacher_sources"] == {"computed": 2, "stored": 2}
    assert ablation["teachers_differ"] is False
    folders = ["student.lr_decoder=5e-5", "student.lr_decoder=1e-4"]
    assert [row["folder"] for row in ablation["rows"]] == folders
    assert [row["variant"] for row in ablation["rows"]] == [[f] for f in folders]
    for row, folder in zip(ablation["rows"], folders, strict=True):
        for seed in (0, 1):
            results = json.loads((out / folder / f"seed_{seed}" / "results.json").read_text())
            by_name = {r["name"]: r for r in results["rows"]}
            refined = by_name["student (CAST refined)"]
            assert row["student_ap"]["per_seed"][str(seed)] == refined["ap"]
            assert row["student_ap50"]["per_seed"][str(seed)] == refined["ap50"]
            transfer = by_name["student (CAST knowledge transfer)"]
            assert row["transfer_ap"]["per_seed"][str(seed)] == transfer["ap"]
        assert (out / folder / "summary.md").is_file()
    # Stage 1 ran in the first variant's seed runs only; the second took it from the store.
    for seed in (0, 1):
        assert (
            out / folders[0] / f"seed_{seed}" / "pseudo_labels_teacher_finetune.jsonl"
        ).is_file()
        assert not (
            out / folders[1] / f"seed_{seed}" / "pseudo_labels_teacher_finetune.jsonl"
        ).exists()
    table = (out / "ablation.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| student.lr_decoder")]
    assert len(lines) == 2 and lines[0].startswith("| student.lr_decoder=5e-5 | ")
    assert "| adapted teacher maskAP" not in table and "share their teacher adaptation" in table
    header = "| variant | after knowledge transfer maskAP | student maskAP | student AP50 |"
    assert header in printed

    # A rerun finds every seed run finished and trains nothing.
    assert main([*args, "--vary", "student.lr_decoder=5e-5,1e-4"]) == 0
    assert json.loads((out / "ablation.json").read_text())["teacher_sources"] == {"earlier": 4}


def test_student_only_contrastive_variants_share_the_teacher(tiny_experiment, fast_args):
    config, out, _ = tiny_experiment
    args = ["ablate", str(config), "--no-progress", *fast_args, "--seeds", "0", "--student-only"]
    assert main([*args, "--vary", "contrastive.mode=uniform,fusion"]) == 0
    ablation = json.loads((out / "ablation.json").read_text())
    assert ablation["teacher_sources"] == {"computed": 1, "stored": 1}
    assert ablation["teachers_differ"] is False
    for mode in ("uniform", "fusion"):
        state = json.loads((out / f"contrastive.mode={mode}/seed_0/run_state.json").read_text())
        config_of_run = state["fingerprint"]["config"]
        assert config_of_run["contrastive"]["mode"] == mode
        assert config_of_run["teacher"]["contrastive"]["mode"] == "fusion"  # the base config's


def test_teacher_columns_appear_when_a_variant_changes_the_teacher(tiny_experiment):
    cfg = load_config(tiny_experiment[0])
    _, student_only = plan_grid(cfg, [parse_axis("student.dropout=0.0,0.1")], [0])
    assert not teachers_differ(student_only)
    variants, teacher = plan_grid(cfg, [parse_axis("loss.lambda_pxl=0,0.2")], [0])
    assert teachers_differ(teacher)
    both, _ = plan_grid(
        cfg,
        [
            parse_axis("contrastive.mode=uniform,fusion"),
            parse_axis("data.image_size=[56,56],[84,84]"),
        ],
        [0],
    )
    assert [v.overrides for v in both] == [
        ("contrastive.mode=uniform", "data.image_size=[56,56]"),
        ("contrastive.mode=uniform", "data.image_size=[84,84]"),
        ("contrastive.mode=fusion", "data.image_size=[56,56]"),
        ("contrastive.mode=fusion", "data.image_size=[84,84]"),
    ]


def test_student_only_pins_stage_one_and_refuses_a_stage_one_axis(tiny_experiment):
    cfg = load_config(tiny_experiment[0])
    axes = [parse_axis("contrastive.mode=uniform,fusion"), parse_axis("contrastive.score=sqrt")]
    _, readapting = plan_grid(cfg, axes, [0])
    assert teachers_differ(readapting)
    _, configs = plan_grid(cfg, axes, [0], student_only=True)
    assert not teachers_differ([cfg, *configs])
    assert [c.contrastive.mode for c in configs] == ["uniform", "fusion"]
    assert all(c.contrastive.score == "sqrt" for c in configs)
    assert all(c.teacher_contrastive == cfg.contrastive for c in configs)
    with pytest.raises(ConfigError, match="--vary loss.lambda_pxl changes the teacher stages"):
        plan_grid(cfg, [*axes, parse_axis("loss.lambda_pxl=0,0.2")], [0], student_only=True)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--vary", "student.lr_decoderr=1e-4,2e-4"], "unknown key 'student.lr_decoderr'"),
        (["--vary", "loss.lambda_pxl=0.2,abc"], "loss.lambda_pxl: expected float, got str 'abc'"),
        (["--vary", "contrastive.mode=fusion,everything"], "contrastive.mode: expected one of"),
        (["--vary", "loss.lambda_pxl"], "must look like section.key=value1,value2"),
        (["--vary", "loss.lambda_pxl=0,0", "--seeds", "0"], "a value repeats"),
        (
            ["--vary", "loss.lambda_pxl=0,1", "--vary", "loss.lambda_pxl=2,3"],
            "names loss.lambda_pxl more than once",
        ),
        ([], "no --vary given"),
        (
            ["--student-only", "--vary", "teacher.lr=1e-4,2e-4"],
            "--student-only: --vary teacher.lr changes the teacher stages",
        ),
    ],
)
def test_bad_input_stops_with_one_line_before_anything_runs(
    tiny_experiment, capsys, extra, message
):
    config, out, store = tiny_experiment
    assert main(["ablate", str(config), *extra]) == 2
    error = capsys.readouterr().err
    assert error.startswith("castseg ablate: error: ") and message in error
    assert len(error.strip().splitlines()) == 1
    assert not out.exists() and not store.exists()


def test_an_empty_seed_list_is_refused(tiny_experiment, capsys):
    config, out, _ = tiny_experiment
    with pytest.raises(SystemExit) as stop:
        main(["ablate", str(config), "--vary", "loss.lambda_pxl=0,1", "--seeds", ""])
    assert stop.value.code == 2 and "argument --seeds" in capsys.readouterr().err
    assert not out.exists()
