"""The demo's results table over several seeds, as mean ± std, and the wall time of each run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_demo_seeds.py [--seeds 0 1 2]
        [--out runs/demo_seeds] [--set key=value ...] [--smoke]

Runs `castseg demo --set run.seed=S` into out/seedS for every seed (the same world, shipped
stand-in teacher and stand-in encoder; run.seed sets the student's decoder init, the batches and
every random draw of training), then prints, as Markdown: each model's maskAP and AP50 (mean ±
sample std, and per seed), the pseudo-labels' quality, the three relations the demo is meant to
show, and the wall time of each run. A seed whose folder holds the wall time of a finished run
(demo_wall_s.json) is not run again, so seeds may be run as separate processes (`--seeds 1`)
and summarised by a last call with all of them.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from castseg.cli import main as castseg
from castseg.pipeline.pseudo_label_quality import read_pseudo_label_rows

ZERO_SHOT = "teacher (zero-shot)"
ADAPTED = "teacher (CAST adapted)"
REFINED = "student (CAST refined)"
SUPERVISED = "student (supervised only)"
WALL_FILE = "demo_wall_s.json"  # the wall time of the seed's finished demo run


def rows_of(run: Path) -> dict[str, tuple[float, float]]:
    """Model name → (maskAP, AP50) from a finished run's run_state.json."""
    state = json.loads((run / "run_state.json").read_text())
    return {
        row["name"]: (row["ap"], row["ap50"])
        for stage in state["stages"].values()
        for row in stage["rows"]
    }


def spread(values: list[float]) -> str:
    """Mean ± sample standard deviation (NaN propagates)."""
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{float(np.mean(values)):.1f} ± {std:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/demo_seeds"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--smoke", action="store_true", help="the smoke demo, to check the script")
    args = parser.parse_args()

    results, walls, pseudo = {}, {}, {}
    for seed in args.seeds:
        run = args.out / f"seed{seed}"
        overrides = [f"--set=run.seed={seed}", *(f"--set={o}" for o in args.overrides)]
        timing = run / WALL_FILE
        if not timing.is_file():
            start = time.perf_counter()
            smoke = ["--smoke"] if args.smoke else []
            if castseg(["demo", "--out", str(run), "--no-progress", *smoke, *overrides]) != 0:
                raise SystemExit(f"the demo of seed {seed} failed (run folder {run})")
            timing.write_text(json.dumps({"wall_s": time.perf_counter() - start}) + "\n")
        walls[seed] = json.loads(timing.read_text())["wall_s"]
        results[seed] = rows_of(run)
        pseudo[seed] = read_pseudo_label_rows(run)
        print(f"seed {seed}: {walls[seed]:.0f} s", flush=True)

    seeds = args.seeds
    names = list(results[seeds[0]])
    print(f"\n| model | maskAP | AP50 | maskAP per seed ({', '.join(map(str, seeds))}) |")
    print("|---|---:|---:|---|")
    for name in names:
        aps = [results[s][name][0] for s in seeds]
        ap50s = [results[s][name][1] for s in seeds]
        each = " / ".join(f"{a:.1f}" for a in aps)
        print(f"| {name} | {spread(aps)} | {spread(ap50s)} | {each} |")

    print("\n| pseudo-labels of | instances / image | labeled / image | maskAP vs D_u truth |")
    print("|---|---:|---:|---:|")
    for index, row in enumerate(pseudo[seeds[0]]):
        rows = [pseudo[s][index] for s in seeds]
        density = spread([r.per_image for r in rows])
        ap = spread([r.ap for r in rows])
        print(f"| {row.teacher} | {density} | {row.labeled_per_image:.2f} | {ap} |")

    def ap(seed: int, name: str) -> float:
        return results[seed][name][0]

    gain = [ap(s, ADAPTED) - ap(s, ZERO_SHOT) for s in seeds]
    margin = [ap(s, REFINED) - ap(s, SUPERVISED) for s in seeds]
    ratio = [100 * ap(s, REFINED) / ap(s, ADAPTED) if ap(s, ADAPTED) else math.nan for s in seeds]
    print("\n| relation | mean ± std | per seed |")
    print("|---|---:|---|")
    for what, values in (
        ("adapted − zero-shot teacher (AP)", gain),
        ("refined CAST − supervised-only student (AP)", margin),
        ("refined CAST student / adapted teacher (%)", ratio),
    ):
        print(f"| {what} | {spread(values)} | {' / '.join(f'{v:.1f}' for v in values)} |")
    print(f"\nwall time per demo run: {', '.join(f'{walls[s]:.0f} s' for s in seeds)}")


if __name__ == "__main__":
    main()
