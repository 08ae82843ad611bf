"""Stage-1 teacher step, paper student step and pseudo-labelling throughput on one accelerator.

Random weights, no downloads (`paper_size` teacher, `build_student("paper")` student), random
images and instances; prints a Markdown table. `benchmarks/gpu_check.sh` runs it, then the
demo, DDP and `castseg bench` checks.

    python benchmarks/gpu_check.py                  # CUDA, the paper's defaults
    python benchmarks/gpu_check.py --dry-run        # CPU, the same code on tiny sizes

Paper defaults: a teacher step is `CastModule.training_step` + backward + AdamW on 4 labeled +
4 unlabeled 518 × 1036 images, K = 100 boxes, λ_semi = 1, λ_pxl = 0.2; a student step the same
with batch 8 (4 + 4). Each runs in fp32 (on CUDA with TF32 matmuls: what `run.matmul_precision`
"auto" gives) and under bf16 autocast (what `bf16-mixed` runs); the student also with λ_pxl = 0,
the floor that L_pxl (its strong view included) adds to. Pseudo-labelling is the teacher's
eval-mode forward without grad, batch 4, `image_chunk` images per pass. Time: the mean of
`--steps` steps after one warm-up step, synchronised; memory: torch.cuda.max_memory_allocated
over those steps (weights, gradients and optimizer states included); host syncs: the ops of one
more step that make the host wait for the device (`castseg.training.host_syncs`, AdamW's reads
of its CPU step counters left out).
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
from castseg.training.host_syncs import HostSyncCounter
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


def cast_module(model: torch.nn.Module, lr: float, lambda_pxl: float = 0.2) -> CastModule:
    module = CastModule(
        model,
        num_classes=len(CLASSES),
        loss=LossConfig(),
        contrastive=ContrastiveConfig(),
        weights=StageWeights(lambda_semi=1.0, lambda_pxl=lambda_pxl),
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
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def training_steps(module, batch, device, steps: int, dtype: torch.dtype | None) -> dict:
    """Seconds per step, peak GiB and host syncs of `steps` optimizer steps after a warm-up
    (none on CPU, where the figures only check the code path)."""
    module.to(device)
    optimizer = module.configure_optimizers()["optimizer"]
    module.optimizers = lambda: optimizer

    def step(index: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss = module.training_step(batch, index)
        loss.backward()
        module.on_before_optimizer_step(optimizer)

    warmup = int(device.type == "cuda")
    times = []
    for index in range(steps + warmup):
        if index == warmup:
            reset_peak(device)
        synchronise(device)
        began = time.perf_counter()
        step(index)
        optimizer.step()
        synchronise(device)
        times.append(time.perf_counter() - began)
    peak = peak_gib(device)
    with HostSyncCounter() as syncs:
        step(steps + 1)
    optimizer.zero_grad(set_to_none=True)
    module.cpu()
    return {"seconds": sum(times[warmup:]) / steps, "peak": peak, "syncs": syncs.total}


def pseudo_label_throughput(teacher, images, device, steps: int, dtype) -> dict:
    """Images per second and peak GiB of the eval-mode forward without grad."""
    teacher.to(device).eval()
    with torch.no_grad(), autocast(device, dtype):
        if device.type == "cuda":
            teacher(images)  # warm-up
        reset_peak(device)
        synchronise(device)
        began = time.perf_counter()
        for _ in range(steps):
            teacher(images)
        synchronise(device)
    teacher.train()
    rate = steps * images.shape[0] / (time.perf_counter() - began)
    return {"rate": rate, "peak": peak_gib(device)}


def gib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def step_row(what: str, result: dict) -> tuple[str, ...]:
    return (what, f"{result['seconds']:.3f} s", gib(result["peak"]), str(result["syncs"]))


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
        device, size, boxes, half = torch.device("cuda"), (518, 1036), args.boxes, 4
        steps = args.steps
        teacher = build_paper_teacher(CLASSES, num_boxes=boxes)
        student = build_student("paper", len(CLASSES))
        torch.set_float32_matmul_precision("high")  # run.matmul_precision "auto" on CUDA
        print(torch.cuda.get_device_name(device), f"torch {torch.__version__}", flush=True)
    print(f"device {device}, images {size[0]}x{size[1]}, K {boxes}, {half} + {half} images a step")
    batch = {"labeled": views(half, size, device, 0), "unlabeled": views(half, size, device, 1)}
    bf16 = torch.bfloat16
    fp32 = "fp32 (TF32)" if device.type == "cuda" else "fp32"
    # On CPU the paper-size teacher's step takes about 20 s: one precision checks its code path.
    teacher_kinds = ((fp32, None), ("bf16-mixed", bf16))[: 1 if args.dry_run else 2]
    label_kinds = ((fp32, None, 1), ("bf16", bf16, 1), ("bf16", bf16, half))

    steps_table = []
    for name, dtype in teacher_kinds:
        result = training_steps(cast_module(teacher, 5e-5), batch, device, steps, dtype)
        steps_table.append(step_row(f"stage-1 teacher step, {name}", result))
        print(*steps_table[-1], flush=True)
    for name, dtype, lambda_pxl in (
        (fp32, None, 0.2),
        ("bf16-mixed", bf16, 0.2),
        ("bf16-mixed, λ_pxl = 0 (floor)", bf16, 0.0),
    ):
        module = cast_module(student, 5e-5, lambda_pxl)
        result = training_steps(module, batch, device, steps, dtype)
        steps_table.append(step_row(f"student step, batch {2 * half}, {name}", result))
        print(*steps_table[-1], flush=True)

    label_table = []
    images = batch["unlabeled"].images
    for name, dtype, chunk in label_kinds[: 1 if args.dry_run else 3]:
        teacher.image_chunk = chunk
        result = pseudo_label_throughput(teacher, images, device, steps, dtype)
        label_table.append(
            (f"pseudo-labelling, batch {half}, image_chunk {chunk}, {name}",)
            + (f"{result['rate']:.2f} images/s", gib(result["peak"]))
        )
        print(*label_table[-1], flush=True)
    teacher.cpu()

    print("\n| training step | time | peak memory (GiB) | host syncs / step |\n|---|---|---|---|")
    for row in steps_table:
        print("| " + " | ".join(row) + " |")
    print("\n| pseudo-labelling | throughput | peak memory (GiB) |\n|---|---|---|")
    for row in label_table:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
