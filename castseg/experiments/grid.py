"""An ablation grid: every variant of a config over the same seeds, and one table of them.

Variant v runs into `<run.out_dir>/<v's folder>/seed_<k>/` (`castseg.experiments.seeds`), with
its own `summary.md`. All variants share the store of the top folder's config
(`castseg.pipeline.stage_store`), so variants that change only student settings share one
teacher adaptation per seed. `ablation.md` and `ablation.json` hold a row per variant: the
refined student's maskAP and AP50 (and its maskAP after knowledge transfer) as mean ± std over
the seeds, plus the adapted teacher's when the variants do not all share their teacher.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from castseg.config import ConfigError, ExperimentConfig, config_to_dict
from castseg.experiments.seeds import run_seeds
from castseg.experiments.summary import Spread, find_row, summarise
from castseg.experiments.variants import Axis, Variant, grid_variants, variant_configs
from castseg.io import atomic_write_json, atomic_write_text
from castseg.models.teachers import build_teacher
from castseg.pipeline.experiment_data import ExperimentData, load_experiment_data
from castseg.pipeline.fingerprints import store_key, teacher_stage_fingerprint
from castseg.pipeline.results import RunResults
from castseg.pipeline.stage_store import store_root
from castseg.pipeline.stage_table import DISTILL, REFINE, TEACHER_SELFTRAIN
from castseg.result_tables import markdown_row
from castseg.runtime.distributed import is_rank_zero

STUDENT_ROW, TRANSFER_ROW, TEACHER_ROW = REFINE.row, DISTILL.row, TEACHER_SELFTRAIN.row
ABLATION_FORMAT = "castseg-ablation-v1"


@dataclass
class VariantRow:
    """One variant over the seeds: the knowledge-transfer student's AP, the refined student's
    and the adapted teacher's AP and AP50."""

    variant: Variant
    transfer_ap: Spread
    student_ap: Spread
    student_ap50: Spread
    teacher_ap: Spread
    teacher_ap50: Spread


@dataclass
class Ablation:
    """The grid's rows, whether the variants' teachers differ, and where the teachers came
    from (`TeacherSource` → number of seed runs)."""

    rows: list[VariantRow]
    teachers_differ: bool
    teacher_sources: dict[str, int]
    wall_s: float


def plan_grid(
    cfg: ExperimentConfig, axes: list[Axis], seeds: Sequence[int], *, student_only: bool = False
) -> tuple[list[Variant], list[ExperimentConfig]]:
    """Every variant and its config, each checked before anything runs.

    student_only: stage 1 keeps the base config's L_pxl settings (teacher.contrastive pinned
    to them), so a varied `contrastive.*` key changes knowledge transfer only; ConfigError when
    a varied key still changes the teacher stages.
    """
    if not seeds:
        raise ValueError("no seeds given: pass e.g. --seeds 0,1,2")
    variants = grid_variants(axes)
    if student_only and cfg.teacher.contrastive is None:
        cfg = replace(cfg, teacher=replace(cfg.teacher, contrastive=cfg.contrastive))
    out_dir = Path(cfg.run.out_dir)
    root = store_root(cfg.run)
    configs = [
        replace(c, run=replace(c.run, stage_store=None if root is None else str(root)))
        for c in variant_configs(cfg, variants, out_dir)
    ]
    if student_only and teachers_differ([cfg, *configs]):
        for axis in axes:  # name the axis that changes stage 1
            if teachers_differ(variant_configs(cfg, grid_variants([axis]), out_dir)):
                raise ConfigError(
                    f"--student-only: --vary {axis.key} changes the teacher stages too (it is a "
                    "stage-1 input); vary it without --student-only"
                )
    return variants, configs


def teachers_differ(configs: list[ExperimentConfig]) -> bool:
    """Whether the variants' teacher stages have different inputs (for the same seed)."""
    keys = {store_key(teacher_stage_fingerprint(c, "")) for c in configs}
    return len(keys) > 1


def run_ablation(
    cfg: ExperimentConfig,
    axes: list[Axis],
    seeds: Sequence[int],
    *,
    progress: bool = True,
    restart: bool = False,
    baseline: bool = False,
    student_only: bool = False,
) -> Ablation | None:
    """Run the grid; write ablation.md/.json into cfg.run.out_dir. The table on rank 0."""
    variants, configs = plan_grid(cfg, axes, seeds, student_only=student_only)
    differ = teachers_differ(configs)
    data_by_config: dict[str, ExperimentData] = {}
    sources: Counter[str] = Counter()
    rows = []
    began = time.perf_counter()
    for i, (variant, variant_cfg) in enumerate(zip(variants, configs, strict=True), 1):
        print(f"=== variant {i} of {len(variants)}: {variant.name}")
        data_key = json.dumps(config_to_dict(variant_cfg)["data"], sort_keys=True)
        if data_key not in data_by_config:
            data_by_config[data_key] = load_experiment_data(variant_cfg.data, progress=progress)
        data = data_by_config[data_key]

        def make_teacher(c: ExperimentConfig = variant_cfg, d: ExperimentData = data) -> Any:
            return build_teacher(c.teacher, d.categories)

        outcome = run_seeds(
            variant_cfg,
            seeds,
            data,
            make_teacher,
            progress=progress,
            restart=restart,
            baseline=baseline,
            title=f"CAST variant {variant.name}",
        )
        sources.update(run.teacher for run in outcome.runs)
        if is_rank_zero():
            rows.append(variant_row(variant, outcome.results))
    if not is_rank_zero():
        return None
    ablation = Ablation(rows, differ, dict(sources), time.perf_counter() - began)
    write_ablation(Path(cfg.run.out_dir), ablation, seeds)
    return ablation


def variant_row(variant: Variant, results: list[RunResults]) -> VariantRow:
    summary = summarise(results)
    rows = {name: find_row(summary, name) for name in (TRANSFER_ROW, STUDENT_ROW, TEACHER_ROW)}
    missing = [name for name, row in rows.items() if row is None]
    if missing:
        raise ValueError(f"variant {variant.name}: its runs lack the {missing[0]!r} row")
    transfer, student, teacher = rows.values()
    return VariantRow(
        variant,
        transfer.metrics["ap"],
        student.metrics["ap"],
        student.metrics["ap50"],
        teacher.metrics["ap"],
        teacher.metrics["ap50"],
    )


def format_ablation_table(ablation: Ablation) -> str:
    """Markdown: variant | knowledge-transfer maskAP | student maskAP | student AP50 [| teacher
    maskAP | teacher AP50]."""
    header = ["variant", "after knowledge transfer maskAP", "student maskAP", "student AP50"]
    if ablation.teachers_differ:
        header += ["adapted teacher maskAP", "adapted teacher AP50"]
    lines = [markdown_row(header), markdown_row(["---"] + ["---:"] * (len(header) - 1))]
    for row in ablation.rows:
        cells = [row.variant.name, row.transfer_ap.text()]
        cells += [row.student_ap.text(), row.student_ap50.text()]
        if ablation.teachers_differ:
            cells += [row.teacher_ap.text(), row.teacher_ap50.text()]
        lines.append(markdown_row(cells))
    return "\n".join(lines)


def write_ablation(out_dir: Path, ablation: Ablation, seeds: Sequence[int]) -> Path:
    """out_dir/ablation.md and ablation.json; returns the .md."""
    sources = ", ".join(f"{n} {source}" for source, n in sorted(ablation.teacher_sources.items()))
    if ablation.teachers_differ:
        teacher = f"and the adapted teacher ({TEACHER_ROW!r})"
    else:
        shared = ablation.rows[0].teacher_ap.text() if ablation.rows else "n/a"
        teacher = f"(the variants share their teacher adaptation: {TEACHER_ROW!r} {shared})"
    text = "\n\n".join(
        [
            "# CAST ablation",
            f"Refined student ({STUDENT_ROW!r}; its maskAP after knowledge transfer, "
            f"{TRANSFER_ROW!r}, beside it) {teacher}, maskAP and AP50 as mean ± sample "
            f"standard deviation over seeds {', '.join(map(str, seeds))}; every variant's "
            "per-seed values are in <variant>/summary.md.",
            format_ablation_table(ablation),
            f"Teacher adaptation per seed run: {sources} (computed: trained by this command; "
            "stored: from the shared stage store; earlier: by an earlier run of the same "
            f"folder). Wall time of the grid: {ablation.wall_s:.1f} s.",
        ]
    )
    path = out_dir / "ablation.md"
    atomic_write_text(path, text + "\n")
    atomic_write_json(
        out_dir / "ablation.json",
        {
            "format": ABLATION_FORMAT,
            "seeds": list(seeds),
            "teachers_differ": ablation.teachers_differ,
            "teacher_sources": ablation.teacher_sources,
            "wall_s": ablation.wall_s,
            "rows": [
                {
                    "variant": list(row.variant.overrides),
                    "folder": row.variant.folder,
                    "transfer_ap": row.transfer_ap.to_json(),
                    "student_ap": row.student_ap.to_json(),
                    "student_ap50": row.student_ap50.to_json(),
                    "teacher_ap": row.teacher_ap.to_json(),
                    "teacher_ap50": row.teacher_ap50.to_json(),
                }
                for row in ablation.rows
            ],
        },
    )
    return path
