"""Summaries over seeds: the arithmetic checked against a hand computation, undefined values,
and runs that do not belong in one summary."""

import json
import math

import numpy as np
import pytest
from matplotlib.container import BarContainer

from castseg.experiments.summary import (
    Spread,
    ap_spread_figure,
    curve_spread,
    plot_loss_spread,
    summarise,
    write_summary,
)
from castseg.pipeline.results import read_results, write_results
from castseg.result_tables import ModelRow


def write_seed(root, seed, teacher_ap, student_ap, student_ap50=50.0):
    rows = [
        ModelRow("teacher (CAST adapted)", 2_000_000, teacher_ap, 30.0, 10.0 + seed, {}),
        ModelRow("student (CAST refined)", 1_000_000, student_ap, student_ap50, 5.0, {"a": 1.0}),
    ]
    out = root / f"seed_{seed}"
    return read_results(write_results(out, rows, seed=seed, baseline=False, fingerprint={}))


def test_mean_and_sample_std_match_a_hand_computation(tmp_path):
    runs = [
        write_seed(tmp_path, 0, 10.0, 20.0),
        write_seed(tmp_path, 1, 12.0, 21.0),
        write_seed(tmp_path, 2, 17.0, 25.0),
    ]
    write_summary(tmp_path, runs, title="t")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2]
    assert summary["sources"] == [f"seed_{k}/results.json" for k in range(3)]
    teacher, student = summary["rows"]
    # Teacher: mean (10 + 12 + 17) / 3 = 13; deviations -3, -1, 4; sample var (9+1+16)/2 = 13.
    assert teacher["ap"]["mean"] == pytest.approx(13.0)
    assert teacher["ap"]["std"] == pytest.approx(math.sqrt(13.0))
    assert teacher["ap"]["per_seed"] == {"0": 10.0, "1": 12.0, "2": 17.0}
    # Wall times 10, 11, 12: mean 11, sample std 1.
    assert teacher["wall_s"]["mean"] == pytest.approx(11.0)
    assert teacher["wall_s"]["std"] == pytest.approx(1.0)
    # Student: mean 22; deviations -2, -1, 3; sample var (4+1+9)/2 = 7. AP50 constant: std 0.
    assert student["ap"]["mean"] == pytest.approx(22.0)
    assert student["ap"]["std"] == pytest.approx(math.sqrt(7.0))
    assert student["ap50"] == {
        "mean": 50.0,
        "std": 0.0,
        "per_seed": {"0": 50.0, "1": 50.0, "2": 50.0},
    }
    markdown = (tmp_path / "summary.md").read_text()
    assert "| teacher (CAST adapted) | 2.00 | 13.0 ± 3.6 | 30.0 ± 0.0 | 11.0 ± 1.0 |" in markdown
    assert "| student (CAST refined) | maskAP | 20.0 | 21.0 | 25.0 |" in markdown
    assert (tmp_path / "summary_ap.png").stat().st_size > 0


def test_the_ap_plot_draws_each_mean_with_an_error_bar_of_one_std(tmp_path):
    runs = [write_seed(tmp_path, k, 10.0, ap) for k, ap in enumerate((20.0, 21.0, 25.0))]
    axes = ap_spread_figure(summarise(runs)).axes[0]
    ap_bars = [c for c in axes.containers if isinstance(c, BarContainer)][0]  # maskAP, then AP50
    assert [bar.get_height() for bar in ap_bars] == pytest.approx([10.0, 22.0])
    (lines,) = ap_bars.errorbar.lines[2]
    teacher, student = lines.get_segments()
    assert teacher[:, 1] == pytest.approx([10.0, 10.0])  # the same AP in every seed: std 0
    # the student: mean 22, sample std √7 (deviations −2, −1, 3)
    assert student[:, 1] == pytest.approx([22.0 - math.sqrt(7.0), 22.0 + math.sqrt(7.0)])


def test_one_seed_has_no_spread_and_an_undefined_value_stays_undefined(tmp_path):
    one = Spread.of({3: 12.5})
    assert one.mean == 12.5 and math.isnan(one.std) and one.text() == "12.5"
    undefined = Spread.of({0: 1.0, 1: math.nan})
    assert math.isnan(undefined.mean) and undefined.text() == "n/a"
    runs = [write_seed(tmp_path, 0, math.nan, 20.0), write_seed(tmp_path, 1, math.nan, 22.0)]
    write_summary(tmp_path, runs, title="t")
    teacher = json.loads((tmp_path / "summary.json").read_text())["rows"][0]
    assert teacher["ap"] == {"mean": None, "std": None, "per_seed": {"0": None, "1": None}}


def test_runs_with_other_models_or_a_repeated_seed_are_refused(tmp_path):
    a = write_seed(tmp_path / "a", 0, 1.0, 2.0)
    b = write_seed(tmp_path / "b", 1, 1.0, 2.0)
    b.rows = b.rows[:1]
    with pytest.raises(ValueError, match=r"seed_1.*holds the models"):
        summarise([a, b])
    with pytest.raises(ValueError, match="seeds repeat"):
        summarise([a, write_seed(tmp_path / "c", 0, 1.0, 2.0)])
    with pytest.raises(ValueError, match="no seed run"):
        summarise([])


def test_a_results_file_of_another_format_names_the_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match=r"results\.json: format 'something-else'"):
        read_results(path)


def test_loss_curves_over_seeds_average_the_steps_every_seed_logged(tmp_path):
    curves = [
        (np.array([0, 5, 10]), np.array([3.0, 2.0, 1.0])),
        (np.array([0, 10]), np.array([5.0, 2.0])),
    ]
    steps, mean, std = curve_spread(curves)
    assert steps.tolist() == [0, 10]
    assert mean.tolist() == [4.0, 1.5]
    assert std == pytest.approx([math.sqrt(2.0), math.sqrt(0.5)])  # sample std of two values
    seeds = []
    for seed, loss in enumerate((1.0, 3.0)):
        folder = tmp_path / f"seed_{seed}"
        for stage in ("distill", "refine") if seed == 0 else ("distill",):
            (folder / stage).mkdir(parents=True)
            (folder / stage / "metrics.csv").write_text(f"step,train/loss\n0,{loss}\n1,{loss}\n")
        seeds.append(folder)
    # refine is logged by one seed only: left out.
    assert plot_loss_spread(seeds, tmp_path / "losses.png") == ["distill"]
    assert (tmp_path / "losses.png").stat().st_size > 0
