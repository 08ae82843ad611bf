"""How far the demo's student gets on ground-truth labels alone: its capacity ceiling.

    OMP_NUM_THREADS=1 python benchmarks/bench_student_ceiling.py --labeled 24 230 [--steps 800]
        [--lr-scale 1 2 3] [--set key=value ...]

For each N, the demo's student (its size, the shipped stand-in encoder, the demo's optimiser and
batch) trains with L_sup alone on N ground-truth-labeled images of the demo's target_train
(N = 24 is the supervised-only baseline's data; N = 230 is nearly all of D_l ∪ D_u with their
hidden truth, what perfect pseudo-labels would give) for --steps steps, and is scored on
target_val. Seed `run.seed` (0 unless --set). No teacher, no L_semi, no L_pxl: an upper bound
for what pseudo-labels can add at that budget, not a CAST result. With N = 24 and the default
--steps it is exactly the demo's supervised-only student, so `--labeled 24 --lr-scale ...` is
the learning-rate sweep of that baseline: each scale multiplies both of demo.yaml's student
learning rates. Prints one Markdown row per (scale, N).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from castseg.data.synthetic import generate_world
from castseg.demo_encoder import SHIPPED_ENCODER
from castseg.demo_plan import FULL, demo_config
from castseg.models.student import build_student
from castseg.pipeline.experiment_data import load_experiment_data
from castseg.pipeline.stages import CastStages
from castseg.runtime.evaluate import evaluate_model
from castseg.training.objective import StageWeights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labeled", type=int, nargs="+", default=[24, 230], help="N values")
    parser.add_argument("--steps", type=int, default=None, help="default: distill + refine")
    parser.add_argument(
        "--lr-scale", type=float, nargs="+", default=[1.0], help="× demo.yaml's student lrs"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_student_ceiling"))
    args = parser.parse_args()

    world = generate_world(args.out / "world", FULL.world)
    base = demo_config(args.out, world, FULL, args.overrides).student
    print(
        "\n| labeled images (ground truth) | steps | student lr (encoder / decoder) | overrides "
        "| maskAP | AP50 | train (s) |"
    )
    print("|---:|---:|---|---|---:|---:|---:|")
    for scale, count in ((s, n) for s in args.lr_scale for n in args.labeled):
        out = args.out / f"lr{scale:g}_labeled_{count}"
        overrides = [
            f"data.split={count}",
            f"student.encoder={SHIPPED_ENCODER}",
            *args.overrides,
            f"student.lr_encoder={base.lr_encoder * scale:g}",
            f"student.lr_decoder={base.lr_decoder * scale:g}",
        ]
        cfg = demo_config(out, world, FULL, overrides)
        steps = args.steps or cfg.student.distill_iters + cfg.student.refine_iters
        data = load_experiment_data(cfg.data, progress=False)
        torch.manual_seed(cfg.run.seed)
        student = build_student(cfg.student.size, len(data.categories), encoder=cfg.student.encoder)
        began = time.perf_counter()
        stages = CastStages(cfg, data, out, progress=False)
        stages.train("ceiling", student, StageWeights(0.0, 0.0), steps=steps, teacher=False)
        seconds = time.perf_counter() - began
        assert data.val is not None
        metrics = evaluate_model(
            student,
            data.val,
            image_size=tuple(cfg.data.image_size),
            top_k=cfg.run.eval_top_k,
            progress=False,
        ).metrics
        shown = ", ".join(args.overrides) or "demo defaults"
        lrs = f"{cfg.student.lr_encoder:g} / {cfg.student.lr_decoder:g} (×{scale:g})"
        print(
            f"| {count} | {steps} | {lrs} | {shown} | {metrics.ap:.1f} | {metrics.ap50:.1f} | "
            f"{seconds:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
