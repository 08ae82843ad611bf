"""What depends on several keys of a config: the image size against the student's patch grid,
and the keys each teacher kind needs."""

from __future__ import annotations

from castseg.config.schema import ConfigError, ExperimentConfig, TeacherSource

# The student's DINOv2 encoder cuts images into 14 × 14 patches (`castseg.models.sizes`, and
# every published DINOv2), so data.image_size must be a multiple of it. An encoder given by hub id
# or folder has its own config: `castseg.training.preflight` checks the size against it.
STUDENT_PATCH_SIZE = 14
# student.encoder values that name no model: the size's own encoder, pretrained or random.
SIZE_ENCODERS = ("auto", "random")


def check_consistency(cfg: ExperimentConfig) -> None:
    """ConfigError naming the key when keys that depend on each other disagree: the image size
    against the student's patch grid, and the keys each teacher kind needs."""
    if cfg.student.encoder in SIZE_ENCODERS:
        bad = [side for side in cfg.data.image_size if side % STUDENT_PATCH_SIZE]
        if bad:
            raise ConfigError(
                f"data.image_size: {list(cfg.data.image_size)} is not a multiple of the "
                f"student's patch size {STUDENT_PATCH_SIZE}; nearest valid sizes: "
                + " or ".join(str(size) for size in nearest_sizes(cfg.data.image_size)),
                ("data.image_size",),
            )
    if cfg.teacher.kind == "ensemble":
        if len(cfg.teacher.members) < 2:
            raise ConfigError(
                "teacher.members: kind 'ensemble' needs at least two members",
                ("teacher.members", "teacher.kind"),
            )
        for i, member in enumerate(cfg.teacher.members):
            _check_teacher_source(member, f"teacher.members[{i}]")
    else:
        _check_teacher_source(cfg.teacher, "teacher")


def nearest_sizes(size: tuple[int, int], multiple: int = STUDENT_PATCH_SIZE) -> list[list[int]]:
    """The multiples of `multiple` just below and just above `size`, side by side."""
    below = [max(multiple, side // multiple * multiple) for side in size]
    above = [-(-side // multiple) * multiple for side in size]
    return [below] if below == above else [below, above]


def _check_teacher_source(source: TeacherSource, key: str) -> None:
    if source.kind == "student_family" and source.checkpoint is None:
        raise ConfigError(
            f"{key}.checkpoint: kind 'student_family' needs the path of a castseg checkpoint of "
            "the pretrained teacher",
            (f"{key}.checkpoint", f"{key}.kind"),
        )
    if source.kind == "hf_universal" and source.model is None and source.checkpoint is None:
        raise ConfigError(
            f"{key}.model: kind 'hf_universal' needs a hub id or local folder of a "
            "Mask2Former or EoMT model",
            (f"{key}.model", f"{key}.kind"),
        )
