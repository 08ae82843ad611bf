"""Memory per image of the paper-size GroundedSAM2 teacher against K boxes, on CPU.

MM-Grounding-DINO-L + SAM2.1-L with random weights (`paper_size`, nothing downloaded), a batch
of `--images` 518 × 1036 images (default 1). For each K it prints, for a stage-1 training step
(the teacher's forward on the weak view, the strong view's `embed` of L_pxl, backward):

- saved: the bytes autograd keeps for backward (torch.autograd.graph.saved_tensors_hooks, each
  storage once, parameters excluded), what an accelerator holds until backward frees it;
- peak: the growth of the process's peak RSS over its RSS before the step, forward + backward
  (saved tensors plus the largest transient: a frozen encoder's activations, one recomputed
  chunk of the mask decoder, ...);

and for inference (pseudo-labelling, evaluation: eval mode, no grad) the same peak. Weights,
gradients and optimizer states are not included; the model's parameter bytes are printed once.

    OMP_NUM_THREADS=1 python benchmarks/bench_teacher_memory.py --boxes 10 100
    OMP_NUM_THREADS=1 python benchmarks/bench_teacher_memory.py --boxes 100 --mask-chunk 25
    OMP_NUM_THREADS=1 python benchmarks/bench_teacher_memory.py --boxes 100 --mode infer
    OMP_NUM_THREADS=1 python benchmarks/bench_teacher_memory.py --boxes 100 --images 2

Two batch sizes give the growth per image that a stage-1 step of 4 + 4 images is derived from.

`--trainable` chooses the stage-1 parts (`grounded_sam2_parts.PARTS`); `--mask-chunk` the
(image, box) pairs per mask-decoder call and `--image-chunk` the images per pass (default: the
teacher's). Run against another checkout
(PYTHONPATH) the script measures that code's teacher, without `--mask-chunk`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from castseg.models.teachers.paper_size import build_paper_teacher

GIB = 1024**3
CITYSCAPES_THINGS = ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
_STATUS = Path(f"/proc/{os.getpid()}/status")
_CLEAR_REFS = Path(f"/proc/{os.getpid()}/clear_refs")


def rss_bytes(field: str) -> int:
    """A /proc status field in bytes: VmRSS (now) or VmHWM (peak since the last reset)."""
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in {_STATUS}")


def reset_peak() -> int:
    """Reset the peak RSS to the current RSS (Linux: clear_refs 5) and return it."""
    _CLEAR_REFS.write_text("5")
    return rss_bytes("VmRSS")


class SavedBytes:
    """saved_tensors_hooks that add up the storages autograd saves, each once."""

    def __init__(self, parameters: list[torch.nn.Parameter]) -> None:
        self.skip = {p.untyped_storage().data_ptr() for p in parameters}
        self.seen: set[int] = set()
        self.total = 0

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in self.skip and pointer not in self.seen:
            self.seen.add(pointer)
            self.total += storage.nbytes()
        return tensor

    @staticmethod
    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor


def train_step(teacher, image: torch.Tensor) -> tuple[int, int, float]:
    """(saved bytes, peak RSS growth, seconds) of forward + L_pxl's embed + backward."""
    teacher.train()
    start = reset_peak()
    began = time.perf_counter()
    saved = SavedBytes(list(teacher.parameters()))
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
        pred = teacher(image)
        strong = teacher.embed(image.flip(-1))
        loss = (
            pred.mask_logits.mean()
            + pred.class_logits.mean()
            + pred.embeddings.mean()
            + strong.mean()
        )
    loss.backward()
    seconds = time.perf_counter() - began
    peak = rss_bytes("VmHWM") - start
    del pred, strong, loss
    teacher.zero_grad(set_to_none=True)
    return saved.total, peak, seconds


def infer(teacher, image: torch.Tensor) -> tuple[int, float]:
    """(peak RSS growth, seconds) of one forward in eval mode without grad."""
    teacher.eval()
    start = reset_peak()
    began = time.perf_counter()
    with torch.no_grad():
        teacher(image)
    return rss_bytes("VmHWM") - start, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boxes", type=int, nargs="+", default=[10, 100], help="K values")
    parser.add_argument("--mode", nargs="+", choices=["train", "infer"], default=["train", "infer"])
    parser.add_argument(
        "--mask-chunk", type=int, default=None, help="(image, box) pairs per decoder call"
    )
    parser.add_argument("--trainable", nargs="+", default=None, help="stage-1 parts")
    parser.add_argument("--size", type=int, nargs=2, default=[518, 1036], help="H W")
    parser.add_argument("--images", type=int, default=1, help="images per batch")
    parser.add_argument(
        "--image-chunk", type=int, default=None, help="images per pass through the sub-models"
    )
    args = parser.parse_args()

    torch.manual_seed(0)
    if args.trainable is None:
        teacher = build_paper_teacher(CITYSCAPES_THINGS, num_boxes=max(args.boxes))
    else:
        teacher = build_paper_teacher(
            CITYSCAPES_THINGS, num_boxes=max(args.boxes), trainable=args.trainable
        )
    if args.mask_chunk is not None:
        teacher.mask_chunk = args.mask_chunk
    if args.image_chunk is not None:
        teacher.image_chunk = args.image_chunk
    parameters = sum(p.numel() * p.element_size() for p in teacher.parameters())
    trainable = sum(p.numel() for p in teacher.parameters() if p.requires_grad)
    print(
        f"paper-size teacher: {parameters / GIB:.2f} GiB of parameters, {trainable / 1e6:.1f}M "
        f"trainable ({', '.join(teacher.trainable)}); mask_chunk "
        f"{getattr(teacher, 'mask_chunk', 'none (one call)')}; image_chunk "
        f"{getattr(teacher, 'image_chunk', 'none (the whole batch)')}; "
        f"{args.images} image(s) of {args.size[0]}x{args.size[1]}, "
        f"threads {torch.get_num_threads()}"
    )
    image = torch.rand(args.images, 3, *args.size, generator=torch.Generator().manual_seed(0))
    print("\n| K | mode | saved for backward (GiB) | peak RSS growth (GiB) | time (s) |")
    print("|---|---|---|---|---|")
    for boxes in args.boxes:
        teacher.num_boxes = boxes
        if "train" in args.mode:
            saved, peak, seconds = train_step(teacher, image)
            print(f"| {boxes} | train | {saved / GIB:.2f} | {peak / GIB:.2f} | {seconds:.0f} |")
        if "infer" in args.mode:
            peak, seconds = infer(teacher, image)
            print(f"| {boxes} | infer | - | {peak / GIB:.2f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
