"""Pretrain the demo student's stand-in encoder and write castseg/assets/demo_encoder/.

    .venv/bin/python scripts/make_demo_encoder.py [--out runs/demo_encoder]

Uses the full demo's world and `encoder_recipe()`: a tiny model trained with L_sup on the source
domain only, whose encoder is saved as a transformers DINOv2 folder. `castseg demo` loads the
result when its fingerprint matches, and otherwise pretrains the same encoder itself.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from castseg.data.synthetic import generate_world
from castseg.demo_encoder import SHIPPED_ENCODER, pretrain_encoder
from castseg.demo_plan import FULL, demo_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo_encoder"))
    args = parser.parse_args()
    world = generate_world(args.out / "world", FULL.world)
    cfg = demo_config(args.out, world, FULL, [])
    start = time.perf_counter()
    folder = pretrain_encoder(FULL.encoder, FULL.world, world, cfg, args.out)
    print(f"pretrained in {time.perf_counter() - start:.0f} s")
    shutil.rmtree(SHIPPED_ENCODER, ignore_errors=True)
    shutil.copytree(folder, SHIPPED_ENCODER)
    size = sum(p.stat().st_size for p in SHIPPED_ENCODER.iterdir()) / 2**20
    print(f"wrote {SHIPPED_ENCODER} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()
