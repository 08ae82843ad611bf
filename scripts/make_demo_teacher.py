"""Pretrain the demo's stand-in teacher and write castseg/assets/demo_teacher.pt (float16).

    .venv/bin/python scripts/make_demo_teacher.py [--out runs/demo_teacher]

Uses the full demo's world and `TeacherRecipe()`; `castseg demo` loads the result when its
fingerprint matches, and otherwise pretrains the same teacher itself.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from castseg.data.synthetic import generate_world
from castseg.demo_plan import FULL, demo_config
from castseg.demo_teacher import SHIPPED_TEACHER, stand_in_teacher, write_half_precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo_teacher"))
    args = parser.parse_args()
    world = generate_world(args.out / "world", FULL.world)
    cfg = demo_config(args.out, world, FULL, [])
    start = time.perf_counter()
    stand_in_teacher(FULL.teacher, FULL.world, world, cfg, args.out)
    print(f"pretrained in {time.perf_counter() - start:.0f} s")
    write_half_precision(args.out / "teacher_source.pt", SHIPPED_TEACHER)
    print(f"wrote {SHIPPED_TEACHER} ({SHIPPED_TEACHER.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
