"""Seconds per training step of J for the demo's models, by which terms are on. Prints a table.

    python benchmarks/bench_training_step.py [--points 1024] [--batch 4]

A step is `CastModule.training_step` + backward + AdamW on random 112×112 images with 8
instances each; the mean of 3 steps after 2 warm-up steps.
"""

from __future__ import annotations

import argparse
import time

import torch

from castseg.config import ContrastiveConfig, LossConfig
from castseg.models.student import build_student
from castseg.structures import Instances
from castseg.training.batches import ViewBatch
from castseg.training.module import CastModule
from castseg.training.objective import StageWeights
from castseg.training.optim import OptimSettings

SETTINGS = {
    "L_sup": StageWeights(0.0, 0.0),
    "+ L_pxl": StageWeights(0.0, 0.2),
    "+ L_semi + L_pxl": StageWeights(1.0, 0.2),
}


def random_batch(size: int) -> ViewBatch:
    targets = []
    for _ in range(size):
        masks = torch.zeros(8, 112, 112, dtype=torch.bool)
        for k in range(8):
            masks[k, 10 * k : 10 * k + 20, 5 + 5 * k : 40 + 5 * k] = True
        targets.append(Instances(masks, torch.randint(0, 5, (8,))))
    return ViewBatch(torch.rand(size, 3, 112, 112), targets)


def seconds_per_step(size: str, weights: StageWeights, points: int, batch: int) -> float:
    torch.manual_seed(0)
    module = CastModule(
        build_student(size, 5),
        num_classes=5,
        loss=LossConfig(num_points=points),
        contrastive=ContrastiveConfig(num_negatives=64, max_anchors=1024),
        weights=weights,
        optim=OptimSettings(
            lr={"encoder": 1e-4, "decoder": 1e-4},
            weight_decay=0.0,
            betas=(0.9, 0.999),
            schedule="poly",
        ),
        steps=10,
    )
    module.log = lambda *args, **kwargs: None
    optimizer = module.configure_optimizers()["optimizer"]
    module.optimizers = lambda: optimizer
    data = {"labeled": random_batch(batch)}
    if weights.lambda_semi:
        data["unlabeled"] = random_batch(batch)
    times = []
    for step in range(5):
        start = time.perf_counter()
        module.training_step(data, step).backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return sum(times[2:]) / 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1024, help="loss.num_points")
    parser.add_argument("--batch", type=int, default=4, help="images per part of the batch")
    args = parser.parse_args()
    print(
        f"batch {args.batch} (+{args.batch} unlabeled with L_semi), {args.points} mask points, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}\n"
    )
    print("| model | " + " | ".join(SETTINGS) + " |")
    print("|---|" + "---:|" * len(SETTINGS))
    for size in ("tiny", "small"):
        cells = [seconds_per_step(size, w, args.points, args.batch) for w in SETTINGS.values()]
        print(f"| {size} | " + " | ".join(f"{c:.2f} s" for c in cells) + " |")


if __name__ == "__main__":
    main()
