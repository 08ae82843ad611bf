"""What depends on several keys of a config: the image size against the student's patch grid,
and the keys each teacher kind needs (`check_teacher`, which `build_teacher` runs too)."""

from __future__ import annotations

from castseg.config.patch_grid import STUDENT_PATCH_SIZE, image_size_problem
from castseg.config.schema import ConfigError, ExperimentConfig, TeacherConfig, TeacherSource

# student.encoder values that name no model: the size's own encoder, pretrained or random.
SIZE_ENCODERS = ("auto", "random")


def check_consistency(cfg: ExperimentConfig) -> None:
    """ConfigError naming the key when keys that depend on each other disagree: the image size
    against the student's patch grid, and the keys each teacher kind needs."""
    if cfg.student.encoder in SIZE_ENCODERS:
        problem = image_size_problem(
            cfg.data.image_size,
            STUDENT_PATCH_SIZE,
            f"the student's patch size {STUDENT_PATCH_SIZE}",
        )
        if problem is not None:
            raise ConfigError(problem, ("data.image_size",))
    check_teacher(cfg.teacher)


def check_teacher(teacher: TeacherConfig) -> None:
    """ConfigError naming the key when the teacher section lacks a key its kind needs, or
    a `label_map` entry is not 'class=model label'."""
    if teacher.kind == "ensemble":
        if len(teacher.members) < 2:
            raise ConfigError(
                "teacher.members: kind 'ensemble' needs at least two members",
                ("teacher.members", "teacher.kind"),
            )
        for i, member in enumerate(teacher.members):
            _check_teacher_source(member, f"teacher.members[{i}]")
    else:
        _check_teacher_source(teacher, "teacher")


def parse_label_map(source: TeacherSource, key: str) -> dict[str, str] | None:
    """{"dataset class": "model label"} from the entries "dataset class=model label" of
    `source.label_map` (`key`: the source's key path); None without entries."""
    mapping = {}
    for entry in source.label_map:
        name, sep, label = entry.partition("=")
        if not sep or not name.strip() or not label.strip():
            raise ConfigError(
                f"{key}.label_map entry {entry!r} must look like 'class=model label'",
                (f"{key}.label_map",),
            )
        mapping[name.strip()] = label.strip()
    return mapping or None


def _check_teacher_source(source: TeacherSource, key: str) -> None:
    if source.kind == "student_family" and source.checkpoint is None:
        raise ConfigError(
            f"{key}.checkpoint: kind 'student_family' needs the path of a castseg checkpoint of "
            "the pretrained teacher",
            (f"{key}.checkpoint", f"{key}.kind"),
        )
    if source.kind == "hf_universal" and source.checkpoint is None:
        if source.model is None:
            raise ConfigError(
                f"{key}.model: kind 'hf_universal' needs a hub id or local folder of a "
                "Mask2Former or EoMT model",
                (f"{key}.model", f"{key}.kind"),
            )
        parse_label_map(source, key)  # read only where the hub model is loaded (no checkpoint)
