"""Seconds and host syncs per training step of J, by which terms are on. Prints a table.

    python benchmarks/bench_training_step.py [--points 1024] [--batch 4]    # the demo's models
    python benchmarks/bench_training_step.py --paper [--steps 2]            # the paper's student

A step is `CastModule.training_step` + backward + AdamW on random images with 8 instances each;
the mean of `--steps` steps after `--warmup` warm-up steps. Demo: 112×112 images, the tiny
student and the small teacher, 64 negatives, at most 1024 anchors. `--paper`: the paper's
student (DINOv2-S + DPT + decoder) on 518×1036 images, 4 + 4 a step, the paper's L_pxl (R = 256,
every pixel an anchor) and 12544 mask points: the "+ L_pxl" columns over the L_sup (+ L_semi)
ones give what L_pxl, its strong view included, adds to a step. Host syncs: the ops of one more
step that make the host wait for an accelerator (`castseg.training.host_syncs`; the optimizer
step, which reads AdamW's CPU step counters, left out).
"""

from __future__ import annotations

import argparse
import time

import torch

from castseg.config import ContrastiveConfig, LossConfig
from castseg.models.student import build_student
from castseg.structures import Instances
from castseg.training.batches import ViewBatch
from castseg.training.host_syncs import HostSyncCounter
from castseg.training.module import CastModule
from castseg.training.objective import StageWeights
from castseg.training.optim import OptimSettings

DEMO = {
    "L_sup": StageWeights(0.0, 0.0),
    "+ L_pxl": StageWeights(0.0, 0.2),
    "+ L_semi + L_pxl": StageWeights(1.0, 0.2),
}
PAPER = {
    "L_sup + L_semi": StageWeights(1.0, 0.0),
    "+ L_pxl": StageWeights(1.0, 0.2),
}


def random_batch(size: int, shape: tuple[int, int]) -> ViewBatch:
    height, width = shape
    targets = []
    for _ in range(size):
        masks = torch.zeros(8, height, width, dtype=torch.bool)
        for k in range(8):
            top, left = k * height // 10, (1 + k) * width // 24
            masks[k, top : top + height // 5, left : left + width // 3] = True
        targets.append(Instances(masks, torch.randint(0, 5, (8,))))
    return ViewBatch(torch.rand(size, 3, height, width), targets)


def measure(module: CastModule, data: dict, warmup: int, steps: int) -> tuple[float, int]:
    """(seconds per step, host syncs of one step)."""
    module.log = lambda *args, **kwargs: None
    optimizer = module.configure_optimizers()["optimizer"]
    module.optimizers = lambda: optimizer
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        module.training_step(data, step).backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    with HostSyncCounter() as syncs:
        module.training_step(data, warmup + steps).backward()
    optimizer.zero_grad()
    return sum(times[warmup:]) / steps, syncs.total


def cast_module(
    size: str, weights: StageWeights, loss: LossConfig, contrastive: ContrastiveConfig
) -> CastModule:
    torch.manual_seed(0)
    return CastModule(
        build_student(size, 5),
        num_classes=5,
        loss=loss,
        contrastive=contrastive,
        weights=weights,
        optim=OptimSettings(
            lr={"encoder": 1e-4, "decoder": 1e-4},
            weight_decay=0.0,
            betas=(0.9, 0.999),
            schedule="poly",
        ),
        steps=10,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", action="store_true", help="the paper's student and sizes")
    parser.add_argument("--points", type=int, help="loss.num_points (demo 1024, paper 12544)")
    parser.add_argument("--batch", type=int, default=4, help="images per part of the batch")
    parser.add_argument("--warmup", type=int, help="untimed steps first (demo 2, paper 1)")
    parser.add_argument("--steps", type=int, help="timed steps (demo 3, paper 2)")
    args = parser.parse_args()
    if args.paper:
        sizes, shape, settings = ("paper",), (518, 1036), PAPER
        loss = LossConfig(num_points=args.points or 12544)
        contrastive = ContrastiveConfig()
        warmup, steps = args.warmup or 1, args.steps or 2
    else:
        sizes, shape, settings = ("tiny", "small"), (112, 112), DEMO
        loss = LossConfig(num_points=args.points or 1024)
        contrastive = ContrastiveConfig(num_negatives=64, max_anchors=1024)
        warmup, steps = args.warmup or 2, args.steps or 3
    print(
        f"{shape[0]}x{shape[1]}, batch {args.batch} (+{args.batch} unlabeled with L_semi), "
        f"{loss.num_points} mask points, R = {contrastive.num_negatives}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}\n"
    )
    print("| model | " + " | ".join(f"{name}: time | syncs" for name in settings) + " |")
    print("|---|" + "---:|---:|" * len(settings))
    for size in sizes:
        cells = []
        for weights in settings.values():
            data = {"labeled": random_batch(args.batch, shape)}
            if weights.lambda_semi:
                data["unlabeled"] = random_batch(args.batch, shape)
            module = cast_module(size, weights, loss, contrastive)
            seconds, syncs = measure(module, data, warmup, steps)
            cells.append(f"{seconds:.2f} s | {syncs}")
        print(f"| {size} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
