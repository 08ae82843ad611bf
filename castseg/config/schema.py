"""The sections of an experiment config: frozen dataclasses with the paper's defaults.

Defaults are the paper's (CAST, appendix B Table 8, appendix D, Table 4). A field made with
`_checked` carries a range that `castseg.config.loading` checks on reading; what depends on
several keys is checked by `castseg.config.consistency`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

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
MatmulPrecision = Literal["auto", "highest", "high", "medium"]


class ConfigError(ValueError):
    """A config key is unknown or missing, or its value has the wrong type or range.

    keys: the full key paths the error is about, the one it names first (e.g.
    ("teacher.checkpoint", "teacher.kind")); `load_config` names the `--set` that set one of
    them, else the file.
    """

    def __init__(self, message: str, keys: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.keys = keys


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
    "a fraction in (0, 1) or a count >= 1",
    lambda v: 0 < v < 1 if isinstance(v, float) else v >= 1,
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
    # labeled part (a fraction in (0, 1) or an image count), the rest unlabeled
    split: float | int | None = _checked(None, _LABELED_SPLIT)
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
    # Where the DINOv2 encoder's weights come from: "auto", the size's published pretrained
    # encoder ("paper": facebook/dinov2-small; "small" and "tiny" have none and start from random
    # weights, which `check` and `run` warn about); "random", random weights by choice; else a
    # hub id or local folder of a transformers DINOv2 model (its config sets the architecture).
    encoder: str = _checked("auto", ("a hub id, a folder, 'auto' or 'random'", lambda v: v != ""))
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
    # Devices per node. castseg never starts processes itself: several devices (or nodes) need
    # one process each from torchrun or srun and strategy "ddp" (docs/distributed.md). Without
    # a launcher "auto" is one device (`run` and `check` say so when there are more, with the
    # torchrun command), and a count above 1 stops with that command.
    devices: int | Literal["auto"] = _checked("auto", _DEVICES)
    num_nodes: int = _checked(1, _POSITIVE)
    strategy: Literal["auto", "ddp"] = "auto"
    # Lightning's precision; "auto": bf16-mixed on a CUDA GPU that supports bf16 (on an H200 a
    # paper student step 0.52 s against 0.63 s in fp32 with TF32, a teacher step 5.6 s against
    # 4.9 s; BENCHMARKS.md, "castseg on a GPU"), 32-true elsewhere. Losses, matching costs and
    # sampler scores stay in float32 under every precision.
    precision: Precision = "auto"
    # CPU threads torch computes with (torch.set_num_threads); null: torch's default, one per
    # core. On a machine shared with other jobs set it to the cores you may use: torch's threads
    # spin waiting for each other. CPU results are bit-identical for the same thread count; a
    # resumed run may use another count (it says that its CPU results then differ).
    threads: int | None = _checked(None, _POSITIVE)
    # torch.set_float32_matmul_precision before training, evaluation and pseudo-labelling;
    # "auto": "high" (TF32 tensor cores) on CUDA, torch's default "highest" elsewhere. It
    # changes results on a GPU, so it is part of the run's and the stage store's fingerprints.
    matmul_precision: MatmulPrecision = "auto"
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
