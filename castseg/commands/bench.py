"""`castseg bench`: parameters and latency of the student and the teacher on the same input.

Both run on one random image of the same size, batch 1, in PyTorch eager (and the student also
in ONNX Runtime with --onnx); the table gives each row's parameters and median latency, and the
teacher's figures divided by each row's. Weights are random: latency does not depend on them.
Image sides are rounded up to multiples of the models' patch size (14): 512 × 1024 → 518 × 1036.
"""

from __future__ import annotations

import argparse
import math
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from castseg.commands import COMMANDS
from castseg.deploy.devices import DEVICES
from castseg.models.sizes import SIZES

if TYPE_CHECKING:
    import torch
    from torch import nn

SECTION = "castseg bench"
# The eight Cityscapes "thing" classes, the paper's main benchmark.
CITYSCAPES_THINGS = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")

TeacherFactory = Callable[[Sequence[str]], "nn.Module"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "bench",
        help=COMMANDS["bench"],
        description=__doc__,
    )
    parser.add_argument(
        "--student-size", choices=sorted(SIZES), default="paper", help="default paper"
    )
    parser.add_argument(
        "--teacher",
        choices=("paper", "NONE"),
        default="paper",
        help="paper: the paper-size teacher; NONE: the student alone (default paper)",
    )
    parser.add_argument("--height", type=int, default=512, help="image height (default 512)")
    parser.add_argument("--width", type=int, default=1024, help="image width (default 1024)")
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="default cpu")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    parser.add_argument(
        "--classes",
        type=lambda text: tuple(name.strip() for name in text.split(",") if name.strip()),
        default=CITYSCAPES_THINGS,
        metavar="A,B,...",
        help="class names the models predict (default: the 8 Cityscapes thing classes)",
    )
    parser.add_argument("--onnx", action="store_true", help="also time the student in ONNX Runtime")
    parser.add_argument(
        "--write",
        type=Path,
        metavar="FILE",
        help=f"put the table into FILE between <!-- {SECTION} --> markers (e.g. BENCHMARKS.md)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, teacher_factory: TeacherFactory | None = None) -> int:
    """Measure and print; `teacher_factory(class_names)` replaces the paper-size teacher."""
    from castseg.deploy.benchmark import benchmark, format_table
    from castseg.deploy.devices import torch_device
    from castseg.deploy.input_size import input_multiple, round_up_size
    from castseg.deploy.markdown_section import write_section
    from castseg.models.student import build_student

    device = torch_device(args.device)
    if not args.classes:
        raise ValueError("--classes needs at least one class name")
    student = build_student(args.student_size, len(args.classes))
    models = []
    if args.teacher != "NONE":
        build_teacher = teacher_factory or _paper_teacher
        models.append((f"teacher ({args.teacher})", build_teacher(args.classes)))
    student_name = f"student ({args.student_size})"
    models.append((student_name, student))

    multiple = math.lcm(*(input_multiple(model) for _, model in models))
    asked = (args.height, args.width)
    image_size = round_up_size(asked, multiple)
    rows = benchmark(
        models,
        image_size,
        device=device,
        warmup=args.warmup,
        repeats=args.repeats,
        onnx_model=student_name if args.onnx else None,
        class_names=args.classes,
    )
    table = format_table(rows)
    context = _context(asked, image_size, multiple, device, args)
    print(f"{context}\n\n{table}")
    if args.write is not None:
        command = "castseg bench " + " ".join(_command_arguments(args))
        write_section(args.write, SECTION, f"    {command}\n\n{context}\n\n{table}")
        print(f"\nwrote the table into {args.write}")
    return 0


def _paper_teacher(class_names: Sequence[str]) -> nn.Module:
    # Imported here: the foundation-model code is heavy and only this path needs it.
    from castseg.models.teachers.paper_size import build_paper_teacher

    return build_paper_teacher(list(class_names))


def _context(
    asked: tuple[int, int],
    size: tuple[int, int],
    multiple: int,
    device: torch.device,
    args: argparse.Namespace,
) -> str:
    import onnxruntime as ort
    import torch

    rounded = ""
    if size != asked:
        rounded = f" (asked {asked[0]} × {asked[1]}, rounded up to multiples of {multiple})"
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        hardware = platform.processor() or platform.machine()
    return (
        f"Input [1, 3, {size[0]}, {size[1]}]{rounded}; device {device.type} "
        f"({hardware}, {torch.get_num_threads()} threads); "
        f"torch {torch.__version__}, onnxruntime {ort.__version__}; median of {args.repeats} "
        f"runs after {args.warmup} warm-up runs; {len(args.classes)} classes."
    )


def _command_arguments(args: argparse.Namespace) -> list[str]:
    arguments = [
        f"--student-size {args.student_size}",
        f"--teacher {args.teacher}",
        f"--height {args.height} --width {args.width}",
        f"--device {args.device}",
        f"--repeats {args.repeats} --warmup {args.warmup}",
    ]
    if args.classes != CITYSCAPES_THINGS:
        arguments.append(f"--classes {','.join(args.classes)}")
    if args.onnx:
        arguments.append("--onnx")
    return arguments
