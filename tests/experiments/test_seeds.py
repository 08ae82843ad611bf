"""`castseg run CONFIG --seeds`: one run per seed, a summary computed from the seed runs'
results.json, finished seeds skipped on a rerun and an interrupted one resumed."""

import json
import statistics

import pytest

from castseg.cli import main


def test_seeds_run_into_their_folders_and_the_summary_is_their_mean_and_spread(
    tiny_experiment, fast_args, capsys
):
    config, out, _ = tiny_experiment
    args = ["run", str(config), "--no-progress", *fast_args, "--seeds", "0,1"]
    assert main(args) == 0
    capsys.readouterr()
    results = [json.loads((out / f"seed_{k}" / "results.json").read_text()) for k in (0, 1)]
    assert [r["seed"] for r in results] == [0, 1]
    summary = json.loads((out / "summary.json").read_text())
    assert [row["name"] for row in summary["rows"]] == [row["name"] for row in results[0]["rows"]]
    for i, row in enumerate(summary["rows"]):
        for key in ("ap", "ap50", "wall_s"):  # wall times differ between seeds: a real spread
            values = [r["rows"][i][key] for r in results]
            assert row[key]["per_seed"] == {"0": values[0], "1": values[1]}
            assert row[key]["mean"] == pytest.approx(statistics.fmean(values))
            assert row[key]["std"] == pytest.approx(statistics.stdev(values))
    assert "± " in (out / "summary.md").read_text()

    # Seed 1 loses its last stage (as if killed during refinement): the rerun skips seed 0,
    # reruns only refinement for seed 1, and rewrites the summary.
    state_path = out / "seed_1" / "run_state.json"
    state = json.loads(state_path.read_text())
    del state["stages"]["refine"]
    state_path.write_text(json.dumps(state))
    (out / "seed_1" / "results.json").unlink()
    (out / "summary.json").unlink()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"Run in {out / 'seed_0'} finished earlier" in printed
    assert "Stage distill finished in an earlier run" in printed
    assert "Stage refine finished" not in printed
    rerun = json.loads((out / "seed_1" / "results.json").read_text())["rows"]
    assert [without_wall_time(row) for row in rerun] == [
        without_wall_time(row) for row in results[1]["rows"]
    ]
    resummed = json.loads((out / "summary.json").read_text())
    assert [row["ap"] for row in resummed["rows"]] == [row["ap"] for row in summary["rows"]]
    assert resummed["seeds"] == [0, 1]


def without_wall_time(row):
    return {k: v for k, v in row.items() if k != "wall_s"}


@pytest.mark.parametrize("seeds", ["", "0,,1", "0,a", "1,1"])
def test_a_bad_seed_list_stops_before_anything_runs(tiny_experiment, capsys, seeds):
    config, out, _ = tiny_experiment
    with pytest.raises(SystemExit) as stop:
        main(["run", str(config), "--seeds", seeds])
    assert stop.value.code == 2
    assert "argument --seeds" in capsys.readouterr().err
    assert not out.exists()
