"""Typed experiment configuration: one YAML file per experiment, paper defaults, clear errors.

A config is a tree of frozen dataclasses (`castseg.config.schema`, the paper's defaults).
`load_config` reads YAML, applies `--set` overrides and checks every key and value against the
field types and ranges (`castseg.config.loading`), then what depends on several keys
(`castseg.config.consistency`), and reports problems by their full key path, e.g.
``student.lr_encoder: expected float, got str 'abc'``.
"""

from castseg.config.consistency import (
    SIZE_ENCODERS,
    check_consistency,
    check_teacher,
    parse_label_map,
)
from castseg.config.loading import (
    BUILTIN_CONFIG_DIR,
    apply_overrides,
    builtin_config,
    builtin_config_names,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from castseg.config.patch_grid import STUDENT_PATCH_SIZE, nearest_sizes
from castseg.config.schema import (
    BadRecordPolicy,
    ConfigError,
    ContrastiveConfig,
    DataConfig,
    ExperimentConfig,
    LossConfig,
    RunConfig,
    StudentConfig,
    TeacherConfig,
    TeacherSource,
)

__all__ = [
    "BUILTIN_CONFIG_DIR",
    "SIZE_ENCODERS",
    "STUDENT_PATCH_SIZE",
    "BadRecordPolicy",
    "ConfigError",
    "ContrastiveConfig",
    "DataConfig",
    "ExperimentConfig",
    "LossConfig",
    "RunConfig",
    "StudentConfig",
    "TeacherConfig",
    "TeacherSource",
    "apply_overrides",
    "builtin_config",
    "builtin_config_names",
    "check_consistency",
    "check_teacher",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "nearest_sizes",
    "parse_label_map",
    "save_config",
]
