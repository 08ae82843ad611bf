"""Typed experiment configuration: one YAML file per experiment, paper defaults, clear errors.

A config is a tree of frozen dataclasses. `load_config` reads YAML, checks every key and value
against the field types (and a few ranges) and reports problems by their full key path, e.g.
``student.lr_encoder: expected float, got str 'abc'``. Defaults are the paper's (CAST, appendix B
Table 8, appendix D, Table 4). Relative paths are relative to the working directory.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

# "grounded_sam2": MM-Grounding-DINO prompted with the class names + SAM2 prompted with its boxes;
# "hf_universal": a transformers Mask2Former / EoMT; "student_family": a castseg checkpoint;
# "ensemble": the fused instances of `teacher.members`.
MemberKind = Literal["grounded_sam2", "hf_universal", "student_family"]
TeacherKind = Literal["grounded_sam2", "hf_universal", "student_family", "ensemble"]
BadRecordPolicy = Literal["error", "skip"]
DEFAULT_DETECTOR = "openmmlab-community/mm_grounding_dino_large_all"
DEFAULT_SEGMENTER = "facebook/sam2.1-hiera-large"
ContrastiveMode = Literal["fusion", "mask_only", "class_only", "uniform"]
ScoreTransform = Literal["identity", "square", "sqrt"]
Accelerator = Literal["auto", "cpu", "gpu", "cuda", "mps"]
Precision = Literal["auto", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true"]

BUILTIN_CONFIG_DIR = Path(__file__).with_name("configs")
# The student's DINOv2 encoder cuts images into 14 × 14 patches (`castseg.models.sizes`), so
# data.image_size must be a multiple of it; checked at load unless student.encoder replaces it.
STUDENT_PATCH_SIZE = 14


class ConfigError(ValueError):
    """A config key is unknown or missing, or its value has the wrong type or range."""


_Check = tuple[str, Callable[[Any], bool]]
_POSITIVE: _Check = ("a value > 0", lambda v: v > 0)
_NON_NEGATIVE: _Check = ("a value >= 0", lambda v: v >= 0)
_UNIT_INTERVAL: _Check = ("a value in [0, 1]", lambda v: 0 <= v <= 1)
_ALL_POSITIVE: _Check = ("entries > 0", lambda v: all(x > 0 for x in v))
_INCREASING_FRACTIONS: _Check = (
    "increasing entries in (0, 1)",
    lambda v: all(0 < x < 1 for x in v) and list(v) == sorted(set(v)),
)
_LABELED_SPLIT: _Check = (
    "a fraction in (0, 1] or a count >= 1",
    lambda v: 0 < v <= 1 if isinstance(v, float) else v >= 1,
)
_DEVICES: _Check = ("'auto' or a count > 0", lambda v: v == "auto" or v > 0)


def _checked(default: Any, check: _Check) -> Any:
    """A dataclass field whose value (when not None) must pass `check` on loading."""
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from. Image roots of None mean the annotation file's folder."""

    labeled_annotations: str  # COCO json of the labeled set (or of all data, with `split`)
    image_root: str | None = None
    unlabeled: str | None = None  # COCO json or a folder of images
    unlabeled_image_root: str | None = None
    val_annotations: str | None = None
    val_image_root: str | None = None
    split: float | int | None = _checked(None, _LABELED_SPLIT)  # labeled part, rest unlabeled
    split_seed: int = 0
    labeled_ids: str | None = None  # text file, one image id per line
    unlabeled_ids: str | None = None
    image_size: tuple[int, int] = _checked((518, 1036), _ALL_POSITIVE)  # [H, W]
    num_workers: int = _checked(2, _NON_NEGATIVE)
    # A broken record (unreadable image, bad annotation): "error" stops naming the file and
    # record; "skip" drops it with a warning, counted in the report.
    on_bad_record: BadRecordPolicy = "error"


@dataclass(frozen=True)
class ContrastiveConfig:
    """The pixel-wise contrastive loss L_pxl and its negative sampler (Table 4)."""

    temperature: float = _checked(0.2, _POSITIVE)
    num_negatives: int = _checked(256, _POSITIVE)
    mode: ContrastiveMode = "fusion"
    score: ScoreTransform = "identity"
    margin: float | None = _checked(None, _NON_NEGATIVE)  # hinge variant instead of InfoNCE
    max_anchors: int | None = _checked(None, _POSITIVE)  # anchors subsampled per batch
    memory_bank: int = _checked(0, _NON_NEGATIVE)  # past embeddings kept as extra negatives


@dataclass(frozen=True)
class TeacherSource:
    """Which teacher model, and where its weights come from (hub ids or local directories).

    grounded_sam2 reads `detector` and `segmenter`; hf_universal reads `model` (and `label_map`,
    entries "dataset class=model label" where the names differ); student_family reads
    `checkpoint`. A `checkpoint` given with another kind is a castseg checkpoint of that teacher
    (e.g. an adapted one) and replaces the hub weights. `trainable` names the parts stage 1 trains
    (null: the teacher's default: decoders, heads, necks and projection head; large encoders
    frozen).
    """

    kind: MemberKind = "grounded_sam2"
    checkpoint: str | None = None
    detector: str = DEFAULT_DETECTOR
    segmenter: str = DEFAULT_SEGMENTER
    model: str | None = None
    prompts: tuple[str, ...] | None = None  # text prompt per class, in class order
    label_map: tuple[str, ...] = ()
    num_boxes: int = _checked(100, _POSITIVE)  # boxes the detector hands to SAM2 per image
    trainable: tuple[str, ...] | None = None
    input_size: tuple[int, int] | None = _checked(None, _ALL_POSITIVE)  # hf_universal [H, W]
    # grounded_sam2 input sizes; null: the processors' (detector [800, 1333], SAM2 1024)
    detector_size: tuple[int, int] | None = _checked(None, _ALL_POSITIVE)  # [shortest, longest]
    segmenter_size: int | None = _checked(None, _POSITIVE)  # square side, a multiple of 32
    proj_dim: int = _checked(128, _POSITIVE)  # pixel-embedding size of the projection head


@dataclass(frozen=True)
class TeacherConfig(TeacherSource):
    """Stage 1, teacher adaptation: AdamW, multi-step schedule (Table 8, appendix D)."""

    kind: TeacherKind = "grounded_sam2"
    members: tuple[TeacherSource, ...] = ()  # kind "ensemble"
    ensemble_iou: float = _checked(0.5, _UNIT_INTERVAL)  # mask IoU that merges members' instances
    ensemble_top_k: int | None = _checked(None, _POSITIVE)  # instances kept; null: all members'
    lr: float = _checked(5e-5, _POSITIVE)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = _checked(0.01, _NON_NEGATIVE)
    batch_size: int = _checked(4, _POSITIVE)
    milestones: tuple[float, ...] = _checked((0.9, 0.95), _INCREASING_FRACTIONS)  # of the run
    gamma: float = _checked(0.1, _POSITIVE)
    finetune_iters: int = _checked(1000, _NON_NEGATIVE)
    selftrain_iters: int = _checked(5000, _NON_NEGATIVE)
    # L_pxl's settings in stage 1; null: the top-level `contrastive` section's. Keys left out
    # take the top-level section's values, so `teacher.contrastive: {}` pins stage 1 to them
    # while `contrastive` varies for the student (`castseg ablate --student-only`).
    contrastive: ContrastiveConfig | None = None


@dataclass(frozen=True)
class StudentConfig:
    """Stages 2 and 3, distillation and refinement: AdamW, poly schedule (Table 8, appendix D)."""

    size: str = "paper"
    encoder: str | None = None  # hub id or local path overriding the size's encoder
    num_queries: int | None = _checked(None, _POSITIVE)
    dropout: float = _checked(0.1, _UNIT_INTERVAL)
    proj_dim: int = _checked(128, _POSITIVE)
    lr_encoder: float = _checked(5e-6, _POSITIVE)
    lr_decoder: float = _checked(5e-5, _POSITIVE)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = _checked(0.05, _NON_NEGATIVE)
    poly_power: float = _checked(0.9, _POSITIVE)
    grad_clip: float = _checked(0.1, _NON_NEGATIVE)  # l2 norm; 0 disables clipping
    batch_size: int = _checked(8, _POSITIVE)
    distill_iters: int = _checked(90000, _NON_NEGATIVE)
    refine_iters: int = _checked(2000, _NON_NEGATIVE)


@dataclass(frozen=True)
class LossConfig:
    """Weights of the unified objective J and of the set-prediction loss inside it."""

    class_weight: float = _checked(2.0, _NON_NEGATIVE)
    mask_weight: float = _checked(5.0, _NON_NEGATIVE)
    dice_weight: float = _checked(5.0, _NON_NEGATIVE)
    # box L1 and GIoU of the teacher's detector (GroundedSAM2 only; Grounding DINO's 5 and 2)
    box_weight: float = _checked(5.0, _NON_NEGATIVE)
    giou_weight: float = _checked(2.0, _NON_NEGATIVE)
    no_object_weight: float = _checked(0.1, _NON_NEGATIVE)
    num_points: int = _checked(12544, _POSITIVE)  # sampled points per mask loss
    lambda_semi: float = _checked(1.0, _NON_NEGATIVE)
    lambda_pxl: float = _checked(0.2, _NON_NEGATIVE)
    pseudo_label_threshold: float = _checked(0.3, _UNIT_INTERVAL)
    # Mask-IoU above which a lower-scoring pseudo-label duplicates another (not in the paper;
    # a teacher's duplicate queries would otherwise be two targets for one object). null: off.
    pseudo_label_nms_iou: float | None = _checked(0.5, _UNIT_INTERVAL)


@dataclass(frozen=True)
class RunConfig:
    """Where outputs go and how Lightning runs."""

    out_dir: str = "runs/default"
    seed: int = 0
    accelerator: Accelerator = "auto"
    devices: int | Literal["auto"] = _checked("auto", _DEVICES)
    num_nodes: int = _checked(1, _POSITIVE)
    strategy: Literal["auto", "ddp"] = "auto"
    # Lightning's precision; "auto": bf16-mixed on a CUDA GPU that supports bf16 (a stage-1
    # step 3.75 s against 5.25 s in fp32, a student step 0.35 s against 0.73 s on an H200;
    # BENCHMARKS.md), 32-true elsewhere. Losses and matching stay in float32 under every one.
    precision: Precision = "auto"
    # CPU threads torch computes with (torch.set_num_threads); null: torch's default, one per
    # core. On a machine shared with other jobs set it to the cores you may use: torch's threads
    # spin waiting for each other. CPU results are bit-identical for the same thread count.
    threads: int | None = _checked(None, _POSITIVE)
    log_every: int = _checked(10, _POSITIVE)
    eval_top_k: int = _checked(100, _POSITIVE)
    checkpoint_every: int = _checked(500, _POSITIVE)  # steps between resumable checkpoints
    max_nonfinite_steps: int = _checked(20, _POSITIVE)  # consecutive skipped steps before stopping
    # train on pseudo-labels even when they are empty or far off the labeled set's density
    allow_weak_pseudo_labels: bool = False
    # Shared stage store: runs whose teacher-adaptation inputs (data, teacher, seed, stage-1 loss
    # and contrastive settings) match reuse its adapted teacher and pseudo-labels. A folder;
    # "auto": .cache beside the run folder (runs/.cache for runs/<name>); null: off.
    stage_store: str | None = "auto"


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: the data plus every stage's settings; only data.labeled_annotations is
    required."""

    data: DataConfig
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @property
    def teacher_contrastive(self) -> ContrastiveConfig:
        """L_pxl's settings in stage 1 (teacher adaptation)."""
        return self.contrastive if self.teacher.contrastive is None else self.teacher.contrastive


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that reads 1e-4 as a float (YAML 1.2); plain PyYAML reads it as a string."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment config, then apply `section.key=value` overrides."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = yaml.load(path.read_text(), Loader=_YamlLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({err})") from err
    try:
        cfg = config_from_dict(raw)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return apply_overrides(cfg, overrides)


def config_from_dict(raw: Any) -> ExperimentConfig:
    """Build and check a config from plain data (as read from YAML): every value's type and
    range, then what depends on several keys (`check_consistency`)."""
    cfg = _build(ExperimentConfig, _with_teacher_contrastive(raw), "")
    check_consistency(cfg)
    return cfg


def _with_teacher_contrastive(raw: Any) -> Any:
    """`raw` with the keys that teacher.contrastive leaves out taken from `contrastive`."""
    teacher = raw.get("teacher") if isinstance(raw, dict) else None
    pinned = teacher.get("contrastive") if isinstance(teacher, dict) else None
    if not isinstance(pinned, dict):
        return raw
    top = raw.get("contrastive")
    merged = {**(top if isinstance(top, dict) else {}), **pinned}
    return {**raw, "teacher": {**teacher, "contrastive": merged}}


def check_consistency(cfg: ExperimentConfig) -> None:
    """ConfigError naming the key when keys that depend on each other disagree: the image size
    against the student's patch grid, and the keys each teacher kind needs."""
    if cfg.student.encoder is None:
        bad = [side for side in cfg.data.image_size if side % STUDENT_PATCH_SIZE]
        if bad:
            raise ConfigError(
                f"data.image_size: {list(cfg.data.image_size)} is not a multiple of the "
                f"student's patch size {STUDENT_PATCH_SIZE}; nearest valid sizes: "
                + " or ".join(str(size) for size in nearest_sizes(cfg.data.image_size))
            )
    if cfg.teacher.kind == "ensemble":
        if len(cfg.teacher.members) < 2:
            raise ConfigError("teacher.members: kind 'ensemble' needs at least two members")
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
            "the pretrained teacher"
        )
    if source.kind == "hf_universal" and source.model is None and source.checkpoint is None:
        raise ConfigError(
            f"{key}.model: kind 'hf_universal' needs a hub id or local folder of a "
            "Mask2Former or EoMT model"
        )


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """Plain nested dicts and lists, ready for YAML or JSON."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return plain(cfg)


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    """Write `cfg` as YAML that `load_config` reads back to an equal config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def apply_overrides(cfg: ExperimentConfig, overrides: Iterable[str]) -> ExperimentConfig:
    """A copy of `cfg` with `section.key=value` overrides; values are read as YAML."""
    raw = config_to_dict(cfg)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        try:
            value = yaml.load(text, Loader=_YamlLoader)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: invalid value ({err})") from err
        *sections, last = key.split(".")
        node = raw
        for depth, part in enumerate(sections):
            if node.get(part) is None:  # a section left null (e.g. teacher.contrastive)
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                prefix = ".".join(sections[: depth + 1])
                raise ConfigError(f"cannot set '{key}': '{prefix}' is a value, not a section")
        if isinstance(value, dict) and isinstance(node.get(last), dict):
            value = {**node[last], **value}
        node[last] = value
    return config_from_dict(raw)


def builtin_config(name: str) -> Path:
    """Path of a config shipped with castseg, e.g. builtin_config("demo")."""
    path = BUILTIN_CONFIG_DIR / f"{name.removesuffix('.yaml')}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"no built-in config '{name}' (available: {', '.join(builtin_config_names())})"
        )
    return path


def builtin_config_names() -> list[str]:
    """Names of the configs shipped with castseg (the YAML files in castseg/configs/)."""
    return sorted(p.stem for p in BUILTIN_CONFIG_DIR.glob("*.yaml"))


def _build(cls: type, raw: Any, path: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if not isinstance(raw, dict):
        where = f"{path}: expected" if path else "expected"
        raise ConfigError(f"{where} a mapping with keys {', '.join(fields)}, got {_show(raw)}")
    known = ", ".join(fields)
    for key in raw:
        if key not in fields:
            raise ConfigError(f"unknown key '{_join(path, key)}' (known: {known})")
    hints = get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        key = _join(path, name)
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"missing key '{key}'")
            continue
        value = _coerce(raw[name], hints[name], key)
        check = f.metadata.get("check")
        if check is not None and value is not None and not check[1](value):
            raise ConfigError(f"{key}: expected {check[0]}, got {value!r}")
        values[name] = value
    return cls(**values)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, {} if value is None else value, key)  # an empty section is allowed
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in get_args(tp)):
            return value
    elif origin in (Union, types.UnionType):
        sections = [arm for arm in get_args(tp) if dataclasses.is_dataclass(arm)]
        if sections and isinstance(value, dict):  # an optional section: errors name its keys
            return _build(sections[0], value, key)
        # Try the arm of the value's own type first, so an int stays an int in `float | int`.
        for arm in sorted(get_args(tp), key=lambda a: a is not type(value)):
            try:
                return _coerce(value, arm, key)
            except ConfigError:
                continue
    elif origin is tuple:
        args = get_args(tp)
        variadic = len(args) == 2 and args[1] is Ellipsis
        if isinstance(value, list | tuple) and (variadic or len(value) == len(args)):
            arms = [args[0]] * len(value) if variadic else args
            return tuple(
                _coerce(v, a, f"{key}[{i}]")
                for i, (v, a) in enumerate(zip(value, arms, strict=True))
            )
    elif tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    elif (tp is type(None) and value is None) or type(value) is tp:
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_show(value)}")


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        names = []
        for arm in get_args(tp):
            literal = get_origin(arm) is Literal
            names += [repr(a) for a in get_args(arm)] if literal else [_type_name(arm)]
        return " or ".join(names)
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} {_type_name(args[0])}"
    return "null" if tp is type(None) else tp.__name__


def _show(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)
