"""The demo teacher's learning rate, chosen as the baseline's is: by fine-tuning on D_l alone.

    OMP_NUM_THREADS=1 python benchmarks/bench_teacher_lr.py [--lr 5e-4 1.5e-4 5e-5]
        [--steps 100] [--set key=value ...]

The shipped stand-in teacher (castseg/assets/demo_teacher.pt, pretrained on the broad domain) is
fine-tuned on the demo's 24 labeled target images exactly as stage 1a does it (L_sup + λ_pxl L_pxl,
the teacher's optimiser, batch and schedule, teacher.finetune_iters steps unless --steps) at each
--lr, and scored on target_val; the first row is the teacher zero-shot. Seed `run.seed` (0). A
teacher that loses AP to fine-tuning at a learning rate would lose it again in self-training,
which uses the same rate. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from castseg.data.synthetic import generate_world
from castseg.demo_plan import FULL, demo_config
from castseg.demo_teacher import stand_in_teacher
from castseg.pipeline.experiment_data import load_experiment_data
from castseg.pipeline.stages import CastStages
from castseg.runtime.evaluate import evaluate_model
from castseg.training.objective import StageWeights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, nargs="+", default=[5e-4, 1.5e-4, 5e-5])
    parser.add_argument("--steps", type=int, default=None, help="default: teacher.finetune_iters")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_teacher_lr"))
    args = parser.parse_args()

    world = generate_world(args.out / "world", FULL.world)
    base = demo_config(args.out, world, FULL, args.overrides)
    data = load_experiment_data(base.data, progress=False)
    pretrained = stand_in_teacher(FULL.teacher, FULL.world, world, base, args.out, progress=False)
    assert data.val is not None

    def ap(model: torch.nn.Module) -> str:
        metrics = evaluate_model(
            model, data.val, image_size=tuple(base.data.image_size), progress=False
        ).metrics
        return f"{metrics.ap:.1f} | {metrics.ap50:.1f}"

    print("\n| teacher | lr | steps | maskAP | AP50 | train (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| zero-shot | – | 0 | {ap(pretrained.eval())} | – |", flush=True)
    for lr in args.lr:
        cfg = demo_config(
            args.out / f"lr{lr:g}", world, FULL, [*args.overrides, f"teacher.lr={lr}"]
        )
        steps = args.steps if args.steps is not None else cfg.teacher.finetune_iters
        teacher = copy.deepcopy(pretrained).train()
        torch.manual_seed(cfg.run.seed)
        began = time.perf_counter()
        stages = CastStages(cfg, data, Path(cfg.run.out_dir), progress=False)
        stages.train(
            "teacher_lr", teacher, StageWeights(0.0, cfg.loss.lambda_pxl), steps=steps, teacher=True
        )
        seconds = time.perf_counter() - began
        print(f"| fine-tuned on D_l | {lr:g} | {steps} | {ap(teacher.eval())} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
