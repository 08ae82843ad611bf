"""Progress of a training stage: plain lines when stdout is a file (as under nohup, SLURM or
`> log`), a bar named for the stage on a terminal."""

from __future__ import annotations

import re
import sys

import pytest

from castseg.config import config_from_dict
from castseg.data.coco import CocoInstanceDataset
from castseg.models.student import build_student
from castseg.training.objective import StageWeights
from castseg.training.optim import OptimSettings
from castseg.training.progress import ProgressLines
from castseg.training.trainer import train_stage

LINE = re.compile(
    r"^refine: step (\d+)/(\d+), loss (\d+\.\d{4}), \d+\.\d\d it/s, ETA \d+:\d\d:\d\d$"
)


def refine(world, out_dir, steps):
    cfg = config_from_dict(
        {
            "data": {"labeled_annotations": str(world["target_train"]), "image_size": [56, 56]},
            "loss": {"num_points": 64},
            "run": {"accelerator": "cpu", "devices": 1, "num_nodes": 1},
        }
    )
    train_stage(
        "refine",
        build_student("tiny", 5),
        cfg,
        num_classes=5,
        labeled=CocoInstanceDataset(world["target_train"]),
        pseudo_labeled=None,
        weights=StageWeights(0.0, 0.0),
        steps=steps,
        optim=OptimSettings.for_student(cfg.student),
        contrastive=cfg.contrastive,
        batch_size=2,
        out_dir=out_dir,
        progress=True,
    )


def test_redirected_output_gets_a_line_per_step_share_with_loss_rate_and_eta(
    synthetic_world, tmp_path, capsys
):
    assert not sys.stdout.isatty()  # captured, as in a log file
    refine(synthetic_world, tmp_path, steps=3)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("refine:")]
    assert [LINE.match(line).group(1, 2) for line in lines] == [("1", "3"), ("2", "3"), ("3", "3")]
    assert lines[-1].endswith("ETA 0:00:00")


def test_on_a_terminal_the_bar_is_named_for_the_stage(
    synthetic_world, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # Lightning's bar writes to stdout
    refine(synthetic_world, tmp_path, steps=2)
    bar = capsys.readouterr().out
    assert "refine: 100%" in bar and "Epoch 0" not in bar
    assert not LINE.search(bar)  # no plain lines beside the bar


@pytest.mark.parametrize(("total", "lines"), [(1000, 10), (5, 10)])
def test_lines_come_every_tenth_of_the_stage(total, lines):
    assert ProgressLines("s", total, lines=lines).every == max(1, total // lines)
