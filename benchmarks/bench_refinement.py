"""Student refinement at demo scale: what it does to the distilled student, by learning rate.

    OMP_NUM_THREADS=1 python benchmarks/bench_refinement.py --run runs/demo [--lr-scale 1 0.1]
        [--steps 100] [--set key=value ...]

Takes a finished demo run's knowledge-transfer checkpoint (run/student_distilled.pt, θ_s*) and
refines it as stage 3 does (L_sup on D_l alone, λ_semi = λ_pxl = 0, the student's optimiser and
poly schedule, --steps steps) with both student learning rates multiplied by each --lr-scale.
For θ_s* and each refined student it prints mask AP on target_val (what the demo reports) and on
D_l itself (the 24 images refinement trains on): a refinement that lifts D_l and lowers
target_val is fitting the labeled images, not removing pseudo-label bias. The run's world and
seed are used (pass the run's --set overrides again).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from castseg.demo_plan import FULL, demo_config
from castseg.models.checkpoints import load_checkpoint
from castseg.pipeline.experiment_data import load_experiment_data
from castseg.pipeline.stages import CastStages
from castseg.runtime.evaluate import evaluate_model
from castseg.training.objective import StageWeights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--lr-scale", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--steps", type=int, default=None, help="default: student.refine_iters")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_refinement"))
    args = parser.parse_args()

    world = json.loads((args.run / "world" / "world.json").read_text())
    splits = {
        split: args.run / "world" / split / "instances.json" for split in world["spec"]["counts"]
    }
    base = demo_config(args.out, splits, FULL, args.overrides)
    data = load_experiment_data(base.data, progress=False)
    distilled = load_checkpoint(args.run / "student_distilled.pt").model

    def scores(model) -> str:
        out = []
        for dataset in (data.val, data.labeled):
            metrics = evaluate_model(
                model, dataset, image_size=tuple(base.data.image_size), progress=False
            ).metrics
            out.append(f"{metrics.ap:.1f}")
        return " | ".join(out)

    print(
        "\n| student | refinement lr (encoder / decoder) | steps | maskAP target_val | maskAP D_l |"
    )
    print("|---|---|---:|---:|---:|")
    print(f"| θ_s* (knowledge transfer) | – | 0 | {scores(distilled)} |", flush=True)
    for scale in args.lr_scale:
        cfg = demo_config(
            args.out / f"lr{scale:g}",
            splits,
            FULL,
            [
                *args.overrides,
                f"student.lr_encoder={base.student.lr_encoder * scale:g}",
                f"student.lr_decoder={base.student.lr_decoder * scale:g}",
            ],
        )
        steps = args.steps if args.steps is not None else cfg.student.refine_iters
        student = copy.deepcopy(distilled).train()
        stages = CastStages(cfg, data, Path(cfg.run.out_dir), progress=False)
        stages.train("refine", student, StageWeights(0.0, 0.0), steps=steps, teacher=False)
        lrs = f"{cfg.student.lr_encoder:g} / {cfg.student.lr_decoder:g} (×{scale:g})"
        print(f"| refined | {lrs} | {steps} | {scores(student)} |", flush=True)


if __name__ == "__main__":
    main()
