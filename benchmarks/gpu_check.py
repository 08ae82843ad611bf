"""Stage-1 teacher step, paper student step and pseudo-labelling throughput on one accelerator.

Random weights, no downloads (`paper_size` teacher, `build_student("paper")` student), random
images and instances; prints a Markdown table. `benchmarks/gpu_check.sh` runs it and then
`castseg bench` (teacher vs student latency in PyTorch and ONNX Runtime).

    python benchmarks/gpu_check.py                  # CUDA, the paper's defaults
    python benchmarks/gpu_check.py --dry-run        # CPU, the same code on tiny sizes

Paper defaults: a teacher step is `CastModule.training_step` + backward + AdamW on 4 labeled +
4 unlabeled 518 × 1036 images, K = 100 boxes, λ_semi = 1, λ_pxl = 0.2; a student step the same
with batch 8 (4 + 4), in fp32 and under bf16 autocast (what "bf16-mixed" runs). Pseudo-labelling
is the teacher's eval-mode forward without grad, batch 4. Time: the mean of `--steps` steps
after one warm-up step, synchronised; memory: torch.cuda.max_memory_allocated over those steps
(weights, gradients and optimizer states included).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from castseg.config import ContrastiveConfig, LossConfig
from castseg.models.student import build_student
from castseg.models.teachers.paper_size import build_paper_teacher
from castseg.structures import Instances
from castseg.training.batches import ViewBatch
from castseg.training.module import CastModule
from castseg.training.objective import StageWeights
from castseg.training.optim import OptimSettings

GIB = 1024**3
CLASSES = ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]


def views(batch: int, size: tuple[int, int], device: torch.device, seed: int) -> ViewBatch:
    """Random images with 8 box-shaped instances each."""
    g = torch.Generator().manual_seed(seed)
    height, width = size
    targets = []
    for _ in range(batch):
        masks = torch.zeros(8, height, width, dtype=torch.bool)
        for k in range(8):
            top, left = int(torch.randint(0, height // 2, (1,), generator=g)), k * width // 9
            masks[k, top : top + height // 3, left : left + width // 8] = True
        targets.append(
            Instances(masks.to(device), torch.randint(0, 8, (8,), generator=g).to(device))
        )
    return ViewBatch(torch.rand(batch, 3, height, width, generator=g).to(device), targets)


def cast_module(model: torch.nn.Module, lr: float) -> CastModule:
    module = CastModule(
        model,
        num_classes=len(CLASSES),
        loss=LossConfig(),
        contrastive=ContrastiveConfig(),
        weights=StageWeights(lambda_semi=1.0, lambda_pxl=0.2),
        optim=OptimSettings(
            lr={"encoder": lr, "decoder": lr},
            weight_decay=0.01,
            betas=(0.9, 0.999),
            schedule="multistep",
            milestones=(0.9, 0.95),
        ),
        steps=100,
    )
    module.log = lambda *args, **kwargs: None
    return module


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None


def training_steps(module, batch, device, steps: int, autocast: torch.dtype | None):
    """(seconds per step, peak GiB) of `steps` optimizer steps after one warm-up step."""
    module.to(device)
    optimizer = module.configure_optimizers()["optimizer"]
    module.optimizers = lambda: optimizer
    cast = (
        torch.autocast(device.type, dtype=autocast)
        if autocast is not None
        else contextlib.nullcontext()
    )
    times = []
    for step in range(steps + 1):
        if step == 1:
            reset_peak(device)
        synchronise(device)
        began = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with cast:
            loss = module.training_step(batch, step)
        loss.backward()
        optimizer.step()
        synchronise(device)
        times.append(time.perf_counter() - began)
    return sum(times[1:]) / steps, peak_gib(device)


def pseudo_label_throughput(teacher, images, device, steps: int) -> tuple[float, float | None]:
    """(images per second, peak GiB) of the eval-mode forward without grad."""
    teacher.eval()
    with torch.no_grad():
        teacher(images)
        reset_peak(device)
        synchronise(device)
        began = time.perf_counter()
        for _ in range(steps):
            teacher(images)
        synchronise(device)
    teacher.train()
    return steps * images.shape[0] / (time.perf_counter() - began), peak_gib(device)


def gib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: the code path")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (default 3)")
    parser.add_argument("--boxes", type=int, default=100, help="teacher boxes K (default 100)")
    args = parser.parse_args()

    if args.dry_run:
        device, size, boxes, half, steps = torch.device("cpu"), (56, 112), 4, 1, 1
        teacher = build_paper_teacher(
            CLASSES, num_boxes=boxes, detector_size=(320, 640), segmenter_size=128
        )
        student = build_student("tiny", len(CLASSES))
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --dry-run to check the code path on CPU")
        device, size, boxes, half, steps = (
            torch.device("cuda"),
            (518, 1036),
            args.boxes,
            4,
            args.steps,
        )
        teacher = build_paper_teacher(CLASSES, num_boxes=boxes)
        student = build_student("paper", len(CLASSES))
    print(f"device {device}, images {size[0]}x{size[1]}, K {boxes}, {half} + {half} images a step")
    batch = {"labeled": views(half, size, device, 0), "unlabeled": views(half, size, device, 1)}

    rows = []
    seconds, peak = training_steps(cast_module(teacher, 5e-5), batch, device, steps, None)
    rows.append(("stage-1 teacher step, fp32", f"{seconds:.2f} s", gib(peak)))
    rate, peak = pseudo_label_throughput(teacher, batch["unlabeled"].images, device, steps)
    rows.append((f"pseudo-labelling, batch {half}", f"{rate:.2f} images/s", gib(peak)))
    teacher.cpu()
    del teacher
    if device.type == "cuda":
        torch.cuda.empty_cache()
    for name, dtype in (("fp32", None), ("bf16-mixed", torch.bfloat16)):
        seconds, peak = training_steps(cast_module(student, 5e-5), batch, device, steps, dtype)
        rows.append((f"student step, batch {2 * half}, {name}", f"{seconds:.2f} s", gib(peak)))

    print("\n| what | time | peak memory (GiB) |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
