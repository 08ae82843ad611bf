"""The checks `castseg run` makes before it trains, shared with `castseg check` so that the two
cannot drift apart.

`Preflight.check(CHECKS)` runs the checks in order, each on what the earlier ones found, and
stops at the first problem with a one-line error naming the file or key:

- folders: run.out_dir and the stage store can be folders;
- launch: the launch against run.strategy, run.devices and run.num_nodes, and the device count
  (`resolve_devices`: without a launcher, one device);
  (these two are `SETUP_CHECKS`, which `run` makes before it starts a process group)
- data: every annotation and image header (`load_experiment_data`);
- teacher: the teacher loads, predicts the dataset's classes and takes the image size;
- student: the student's encoder loads and its patch grid takes the image size;
- earlier runs: a run folder that holds an earlier run is resumed by this config and teacher
  (unless `restart`), one folder per seed with `seeds`.

`models=False` (`castseg check --no-models`) skips only what needs hub weights: castseg
checkpoints and model folders on disk are still loaded. Each check adds the lines `castseg check`
prints; what `castseg run` must say too (one device of several, a student that starts from
random weights nobody asked for) is a `PreflightWarning`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import nn

from castseg.config import STUDENT_PATCH_SIZE, ExperimentConfig, TeacherSource
from castseg.config.patch_grid import image_size_problem
from castseg.deploy.input_size import input_multiple
from castseg.experiments.seeds import seed_config
from castseg.io import check_output_folder
from castseg.models.sizes import student_encoder
from castseg.pipeline.experiment_data import ExperimentData, load_experiment_data
from castseg.pipeline.fingerprints import run_fingerprint
from castseg.pipeline.run_state import RUN_STATE_FILE, RunState
from castseg.pipeline.stage_store import store_root
from castseg.pipeline.stages import state_fingerprint
from castseg.runtime.distributed import resolve_devices


class PreflightWarning(UserWarning):
    """The run will do something its config may not mean: use one of several devices, or start
    the student from random weights that were not asked for."""


@dataclass
class Preflight:
    """The run being checked and what the checks found.

    cfg: the config, with run.devices resolved by the launch check. config: its file, for the
    commands that messages show. models: load hub weights (False: `check --no-models`).
    lines: (what, finding) for `castseg check` to print.
    """

    cfg: ExperimentConfig
    config: Path
    models: bool = True
    restart: bool = False
    seeds: tuple[int, ...] | None = None
    progress: bool = True
    data: ExperimentData | None = None
    teacher: nn.Module | None = None
    lines: list[tuple[str, str]] = field(default_factory=list)

    def check(self, checks: tuple[Callable[[Preflight], None], ...]) -> Preflight:
        """Run `checks` in order; this preflight, for chaining."""
        for check in checks:
            check(self)
        return self

    def say(self, what: str, finding: str) -> None:
        self.lines.append((what, finding))

    def warn(self, what: str, finding: str) -> None:
        self.say(what, finding)
        warnings.warn(finding, PreflightWarning, stacklevel=2)


def check_folders(flight: Preflight) -> None:
    check_output_folder(Path(flight.cfg.run.out_dir), "run.out_dir")
    store = store_root(flight.cfg.run)
    if store is not None:
        check_output_folder(store, "run.stage_store")


def check_launch(flight: Preflight) -> None:
    run, note = resolve_devices(flight.cfg.run, str(flight.config))
    flight.cfg = replace(flight.cfg, run=run)
    nodes = f" × {run.num_nodes} nodes" if run.num_nodes > 1 else ""
    found = f"{run.devices}{nodes} ({run.accelerator}, strategy {run.strategy})"
    if note is None:
        flight.say("devices", found)
    else:
        flight.warn("devices", note)


def check_data(flight: Preflight) -> None:
    flight.data = load_experiment_data(flight.cfg.data, progress=flight.progress)
    flight.say("data", describe_data(flight.data))


def check_teacher(flight: Preflight) -> None:
    teacher, data = flight.cfg.teacher, flight.data
    assert data is not None
    sources = teacher.members if teacher.kind == "ensemble" else (teacher,)
    if not flight.models and not all(_on_disk(source) for source in sources):
        flight.say("teacher", f"{teacher.kind}, not loaded (--no-models: hub weights)")
        return
    flight.teacher = load_teacher(flight.cfg, data)
    _check_input_size(flight.cfg, input_multiple(flight.teacher), "the teacher")
    parameters = sum(p.numel() for p in flight.teacher.parameters())
    flight.say("teacher", f"{teacher.kind}, loads ({parameters / 1e6:.1f}M parameters)")


def check_student(flight: Preflight) -> None:
    student = flight.cfg.student
    source = student_encoder(student.size, student.encoder)
    if source is None and student.encoder == "random":
        flight.say("student", f"{student.size}, random encoder weights (student.encoder: random)")
    elif source is None:
        flight.warn(
            "student",
            f"student.encoder: size {student.size!r} has no published pretrained encoder, so the "
            f"student starts from random weights, at student.lr_encoder {student.lr_encoder:g} "
            "(the paper's 5e-06 is meant to fine-tune a pretrained encoder); set student.encoder "
            "to a DINOv2 hub id or folder, or to 'random' to choose random weights",
        )
    elif flight.models or Path(source).expanduser().exists():
        encoder = load_encoder(source)
        _check_input_size(flight.cfg, encoder.patch_size, f"student.encoder {source}")
        flight.say("student", f"{student.size}, pretrained encoder {source} (loads)")
    else:  # every published DINOv2 has 14-pixel patches
        _check_input_size(flight.cfg, STUDENT_PATCH_SIZE, f"student.encoder {source}")
        flight.say(
            "student",
            f"{student.size}, pretrained encoder {source} (not loaded: --no-models; DINOv2's "
            f"{STUDENT_PATCH_SIZE}-pixel patches assumed)",
        )


def check_earlier_runs(flight: Preflight) -> None:
    teacher_weights = "" if flight.teacher is None else state_fingerprint(flight.teacher)
    seeds = [None] if flight.seeds is None else flight.seeds
    for seed in seeds:
        cfg = flight.cfg if seed is None else seed_config(flight.cfg, seed, flight.cfg.run.out_dir)
        out_dir = Path(cfg.run.out_dir)
        if flight.restart:
            if (out_dir / RUN_STATE_FILE).exists():
                flight.say("earlier run", f"{out_dir}: --restart discards the run there")
            continue
        state = RunState.open(
            out_dir,
            run_fingerprint(cfg, teacher_weights),
            teacher_known=flight.teacher is not None,
        )
        if not state.stage_names:
            flight.say("earlier run", f"{out_dir}: no earlier run there")
            continue
        finished = (
            f"{out_dir}: resumes the run there, which finished {', '.join(state.stage_names)}"
        )
        note = state.threads_note()
        flight.say("earlier run", finished if note is None else f"{finished}; {note}")


# Every check `castseg run` makes before training, in order; `castseg check` makes them all.
SETUP_CHECKS: tuple[Callable[[Preflight], None], ...] = (check_folders, check_launch)
MODEL_CHECKS: tuple[Callable[[Preflight], None], ...] = (
    check_data,
    check_teacher,
    check_student,
    check_earlier_runs,
)
CHECKS = (*SETUP_CHECKS, *MODEL_CHECKS)


def describe_data(data: ExperimentData) -> str:
    """'24 labeled, 216 unlabeled, 60 val images; 5 classes (disc, box, ...)'."""
    sizes = [f"{len(data.labeled)} labeled"]
    sizes.append(f"{len(data.unlabeled) if data.unlabeled is not None else 0} unlabeled")
    sizes.append(f"{len(data.val)} val images" if data.val is not None else "no val images")
    names = list(data.categories.names)
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return f"{', '.join(sizes)}; {len(names)} classes ({shown})"


def load_teacher(cfg: ExperimentConfig, data: ExperimentData) -> nn.Module:
    """`build_teacher` with a one-line error for weights that cannot be fetched or read."""
    from castseg.models.teachers import build_teacher

    try:
        return build_teacher(cfg.teacher, data.categories)
    except OSError as err:  # transformers: a hub id that cannot be fetched, a folder without files
        first = str(err).strip().splitlines()[0]
        raise ValueError(
            f"teacher ({cfg.teacher.kind}) cannot be loaded: {first} (`castseg check --no-models` "
            "checks the rest)"
        ) from err


def load_encoder(source: str) -> nn.Module:
    """The student's pretrained DINOv2 encoder, with a one-line error when it cannot be loaded."""
    from castseg.models.encoder import DinoEncoder

    try:
        return DinoEncoder(pretrained=source)
    except OSError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(
            f"student.encoder {source} cannot be loaded: {first} (`castseg check --no-models` "
            "checks the rest)"
        ) from err


def _on_disk(source: TeacherSource) -> bool:
    """Whether a teacher's weights are files here (a checkpoint, or existing model folders)."""
    if source.checkpoint is not None:
        return True
    names = [source.detector, source.segmenter] if source.kind == "grounded_sam2" else []
    names += [source.model] if source.kind == "hf_universal" and source.model else []
    return bool(names) and all(Path(name).expanduser().exists() for name in names)


def _check_input_size(cfg: ExperimentConfig, multiple: int, what: str) -> None:
    problem = image_size_problem(
        cfg.data.image_size, multiple, f"the patch size {multiple} of {what}"
    )
    if problem is not None:
        raise ValueError(problem)
