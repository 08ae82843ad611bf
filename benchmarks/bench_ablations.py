"""The paper's ablations on the demo's synthetic world with `castseg ablate`, at a reduced scale.

    python benchmarks/bench_ablations.py --out runs/bench_ablations [--seeds 0,1,2]
        [--only lambda_pxl,refine,sharing,sampler]

The world is the demo's (same seed, 112 × 112, the shipped stand-in teacher)
with fewer target images and far fewer steps than `castseg demo` (`SCALE`), so that the grids
fit a shared 2-core CPU. Every grid is one `castseg ablate` into --out/<grid>, all sharing one
stage store, so a teacher adaptation that two grids have in common runs once. `sharing` times
a student-only grid (refinement on / off, seed 0) from an empty store and with the store off.
Prints one Markdown table per grid (mean ± sample std over the seeds, the paper's Cityscapes
figures beside them) and the grid wall times.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from castseg.cli import main
from castseg.config import config_from_dict, config_to_dict, save_config
from castseg.data.coco import CategoryMap
from castseg.data.synthetic import generate_world
from castseg.demo_encoder import stand_in_encoder
from castseg.demo_plan import FULL, DemoPlan, demo_config
from castseg.demo_teacher import stand_in_teacher
from castseg.models.checkpoints import save_checkpoint

# The demo's world and stand-ins (source_train and broad_train as in the demo, so the shipped ones
# apply), fewer target images, and every stage shortened.
SCALE = DemoPlan(
    counts={
        "source_train": FULL.counts["source_train"],
        "broad_train": FULL.counts["broad_train"],
        "target_train": 64,
        "target_val": 24,
    },
    labeled=8,
    teacher=FULL.teacher,
    encoder=FULL.encoder,
    overrides=(
        "teacher.finetune_iters=10",
        "teacher.selftrain_iters=20",
        "student.distill_iters=60",
        "student.refine_iters=20",
        "run.log_every=5",
    ),
)
# The paper's Cityscapes 10 % figures (maskAP / AP50). Tables 3a, 4 and 2b; the sampler and
# λ_pxl rows are the student after knowledge transfer, before refinement.
PAPER = {
    "sampler": {
        "contrastive.mode=uniform": "29.4 / 50.2",
        "contrastive.mode=mask_only": "30.6 / 55.0",
        "contrastive.mode=class_only": "31.1 / 55.3",
        "contrastive.mode=fusion": "32.2 / 56.5",
    },
    "lambda_pxl": {
        "loss.lambda_pxl=0.0": "teacher 29.7 / 55.3; student 30.7 / 54.9",
        "loss.lambda_pxl=0.2": "teacher 30.5 / 56.6; student 32.2 / 56.5",
    },
    "refine": {
        "student.refine_iters=0": "32.2 (no student FT)",
        "student.refine_iters=20": "33.9 (full CAST)",
    },
}
GRIDS = {
    "lambda_pxl": ["--vary", "loss.lambda_pxl=0.0,0.2"],
    "sampler": ["--vary", "contrastive.mode=uniform,mask_only,class_only,fusion"],
    "refine": ["--vary", "student.refine_iters=0,20"],
}
ROWS = {
    "teacher (CAST adapted)": "adapted teacher",
    "student (CAST knowledge transfer)": "student, distilled",
    "student (CAST refined)": "student, refined",
}


def prepare(out: Path) -> Path:
    """The world, the stand-in teacher as a checkpoint, the stand-in encoder (as the demo's
    students start from it), and a config that uses them."""
    world = generate_world(out / "world", SCALE.world)
    cfg = demo_config(out, world, SCALE, [])
    encoder = stand_in_encoder(SCALE.encoder, SCALE.world, world, cfg, out, progress=False)
    teacher = stand_in_teacher(SCALE.teacher, SCALE.world, world, cfg, out, progress=False)
    checkpoint = save_checkpoint(
        out / "teacher_source_checkpoint.pt",
        teacher,
        category_map=CategoryMap.from_coco(world["target_train"]),
        image_size=tuple(cfg.data.image_size),
    )
    raw = config_to_dict(cfg)
    raw["teacher"]["checkpoint"] = str(checkpoint)
    raw["student"]["encoder"] = str(encoder)
    raw["run"]["stage_store"] = str(out / ".cache")
    path = out / "bench.yaml"
    save_config(config_from_dict(raw), path)
    return path


def ablate(config: Path, out: Path, grid: list[str], seeds: str, *extra: str) -> float:
    began = time.perf_counter()
    args = ["ablate", str(config), *grid, "--seeds", seeds, "--no-progress"]
    code = main([*args, "--set", f"run.out_dir={out}", *extra])
    if code != 0:
        raise SystemExit(f"castseg ablate into {out} failed with exit code {code}")
    return time.perf_counter() - began


def table(out: Path, paper: dict[str, str]) -> str:
    """Markdown: variant | each row of ROWS as mean ± std | the paper's figures."""
    ablation = json.loads((out / "ablation.json").read_text())
    header = ["variant", *(f"{label} maskAP / AP50" for label in ROWS.values()), "paper"]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 2) + "|---|"]
    for row in ablation["rows"]:
        summary = json.loads((out / row["folder"] / "summary.json").read_text())
        by_name = {r["name"]: r for r in summary["rows"]}
        cells = [", ".join(row["variant"])]
        for name in ROWS:
            ap, ap50 = by_name[name]["ap"], by_name[name]["ap50"]
            cells.append(f"{_spread(ap)} / {_spread(ap50)}")
        cells.append(paper.get(", ".join(row["variant"]), ""))
        lines.append("| " + " | ".join(cells) + " |")
    sources = ablation["teacher_sources"]
    lines.append("")
    lines.append(f"Teacher adaptations: {sources}; grid wall time {ablation['wall_s']:.0f} s.")
    return "\n".join(lines)


def _spread(metric: dict) -> str:
    if metric["mean"] is None:
        return "n/a"
    if metric["std"] is None:
        return f"{metric['mean']:.1f}"
    return f"{metric['mean']:.1f} ± {metric['std']:.1f}"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_ablations"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", default="lambda_pxl,refine,sharing,sampler")
    return parser.parse_args()


def sharing(config: Path, out: Path) -> str:
    """Wall time of the student-only refinement grid for seed 0, from an empty store and with
    the store off."""
    grid = GRIDS["refine"]
    shared = ablate(config, out / "sharing_on", grid, "0", f"--set=run.stage_store={out}/.timing")
    alone = ablate(config, out / "sharing_off", grid, "0", "--set=run.stage_store=null")
    return (
        "| stage store | teacher adaptations | wall time (s) |\n|---|---:|---:|\n"
        f"| shared (empty at the start) | 1 | {shared:.0f} |\n| off | 2 | {alone:.0f} |"
    )


def run() -> None:
    args = parse_args()
    chosen = args.only.split(",")
    unknown = [name for name in chosen if name not in (*GRIDS, "sharing")]
    if unknown:
        raise SystemExit(f"--only: unknown grids {unknown} (known: {', '.join(GRIDS)}, sharing)")
    config = prepare(args.out)
    reports = []
    for name in chosen:
        began = time.perf_counter()
        if name == "sharing":
            text = sharing(config, args.out)
        else:
            ablate(config, args.out / name, GRIDS[name], args.seeds)
            text = table(args.out / name, PAPER[name])
        reports.append(f"### {name} ({time.perf_counter() - began:.0f} s)\n\n{text}")
        print(reports[-1], flush=True)
    print("\n\n".join(reports))


if __name__ == "__main__":
    run()
