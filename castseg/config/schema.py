"""The sections of an experiment config: frozen dataclasses with the paper's defaults.

Defaults are the paper's (CAST, appendix B Table 8, appendix D, Table 4). Every field is made with
`_key`, which declares what its value affects (`affects`, below) and may carry a range that
`castseg.config.loading` checks on reading; what depends on several keys is checked by
`castseg.config.consistency`.

What a key affects decides which fingerprints hold it (`castseg.pipeline.fingerprints`):

    "none"       no number: where and how often the run writes, how many loader processes it
                 uses, when it gives up; in no fingerprint
    "resumable"  CPU results in their last bits, yet a resumed run may change it (run.threads);
                 in no fingerprint (the run state notes the change)
    "student"    knowledge transfer and refinement only; in the run's fingerprint
    "all"        every stage, teacher adaptation included; in the run's and the stage store's
    "l_pxl"      an L_pxl section: stage 1 reads `ExperimentConfig.teacher_contrastive`, the student
                 the top-level `contrastive`; in the run's fingerprint as written, in the stage
                 store's as stage 1 reads it

A section declares the most any of its keys affects; its keys declare their own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field
from typing import Any, Literal, get_args

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


Affects = Literal["none", "resumable", "student", "all", "l_pxl"]
NONE, RESUMABLE, STUDENT, ALL, L_PXL = get_args(Affects)


def _key(default: Any, affects: Affects, check: _Check | None = None) -> Any:
    """A dataclass field (required when `default` is MISSING) that affects `affects` (see the
    module doc) and whose value (when not None) must pass `check` on loading."""
    metadata: dict[str, Any] = {"affects": affects}
    if check is not None:
        metadata["check"] = check
    return field(default=default, metadata=metadata)


def _section(factory: Callable[[], Any], affects: Affects) -> Any:
    """A field holding a section of the config, made by `factory` by default."""
    return field(default_factory=factory, metadata={"affects": affects})


def affects(key: Field) -> Affects:
    """What a config field declares it affects; KeyError naming it when it declares nothing."""
    if "affects" not in key.metadata:
        raise KeyError(f"config key {key.name!r} declares nothing in metadata['affects']")
    return key.metadata["affects"]


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from. Image roots of None mean the annotation file's folder."""

    # COCO json of the labeled set (or of all data, with `split`)
    labeled_annotations: str = _key(MISSING, ALL)
    image_root: str | None = _key(None, ALL)
    unlabeled: str | None = _key(None, ALL)  # COCO json or a folder of images
    unlabeled_image_root: str | None = _key(None, ALL)
    val_annotations: str | None = _key(None, ALL)
    val_image_root: str | None = _key(None, ALL)
    # labeled part (a fraction in (0, 1) or an image count), the rest unlabeled
    split: float | int | None = _key(None, ALL, _LABELED_SPLIT)
    split_seed: int = _key(0, ALL)
    labeled_ids: str | None = _key(None, ALL)  # text file, one image id per line
    unlabeled_ids: str | None = _key(None, ALL)
    image_size: tuple[int, int] = _key((518, 1036), ALL, _ALL_POSITIVE)  # [H, W]
    num_workers: int = _key(2, NONE, _NON_NEGATIVE)
    # A broken record (unreadable image, bad annotation): "error" stops naming the file and
    # record; "skip" drops it with a warning, counted in the report.
    on_bad_record: BadRecordPolicy = _key("error", ALL)


@dataclass(frozen=True)
class ContrastiveConfig:
    """The pixel-wise contrastive loss L_pxl and its negative sampler (Table 4)."""

    temperature: float = _key(0.2, ALL, _POSITIVE)
    num_negatives: int = _key(256, ALL, _POSITIVE)
    mode: ContrastiveMode = _key("fusion", ALL)
    score: ScoreTransform = _key("identity", ALL)
    margin: float | None = _key(None, ALL, _NON_NEGATIVE)  # hinge variant instead of InfoNCE
    max_anchors: int | None = _key(None, ALL, _POSITIVE)  # anchors subsampled per batch
    memory_bank: int = _key(0, ALL, _NON_NEGATIVE)  # past embeddings kept as extra negatives


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

    kind: MemberKind = _key("grounded_sam2", ALL)
    checkpoint: str | None = _key(None, ALL)
    detector: str = _key(DEFAULT_DETECTOR, ALL)
    segmenter: str = _key(DEFAULT_SEGMENTER, ALL)
    model: str | None = _key(None, ALL)
    prompts: tuple[str, ...] | None = _key(None, ALL)  # text prompt per class, in class order
    label_map: tuple[str, ...] = _key((), ALL)
    num_boxes: int = _key(100, ALL, _POSITIVE)  # boxes the detector hands to SAM2 per image
    trainable: tuple[str, ...] | None = _key(None, ALL)
    input_size: tuple[int, int] | None = _key(None, ALL, _ALL_POSITIVE)  # hf_universal [H, W]
    # grounded_sam2 input sizes; null: the processors' (detector [800, 1333], SAM2 1024)
    detector_size: tuple[int, int] | None = _key(None, ALL, _ALL_POSITIVE)  # [shortest, longest]
    segmenter_size: int | None = _key(None, ALL, _POSITIVE)  # square side, a multiple of 32
    proj_dim: int = _key(128, ALL, _POSITIVE)  # pixel-embedding size of the projection head


@dataclass(frozen=True)
class TeacherConfig(TeacherSource):
    """Stage 1, teacher adaptation: AdamW, multi-step schedule (Table 8, appendix D)."""

    kind: TeacherKind = _key("grounded_sam2", ALL)
    members: tuple[TeacherSource, ...] = _key((), ALL)  # kind "ensemble"
    ensemble_iou: float = _key(0.5, ALL, _UNIT_INTERVAL)  # mask IoU that merges members' instances
    ensemble_top_k: int | None = _key(None, ALL, _POSITIVE)  # instances kept; null: all members'
    lr: float = _key(5e-5, ALL, _POSITIVE)
    betas: tuple[float, float] = _key((0.9, 0.999), ALL)
    weight_decay: float = _key(0.01, ALL, _NON_NEGATIVE)
    batch_size: int = _key(4, ALL, _POSITIVE)
    milestones: tuple[float, ...] = _key((0.9, 0.95), ALL, _INCREASING_FRACTIONS)  # of the run
    gamma: float = _key(0.1, ALL, _POSITIVE)
    finetune_iters: int = _key(1000, ALL, _NON_NEGATIVE)
    selftrain_iters: int = _key(5000, ALL, _NON_NEGATIVE)
    # L_pxl's settings in stage 1; null: the top-level `contrastive` section's. Keys left out
    # take the top-level section's values, so `teacher.contrastive: {}` pins stage 1 to them
    # while `contrastive` varies for the student (`castseg ablate --student-only`).
    contrastive: ContrastiveConfig | None = _key(None, L_PXL)


@dataclass(frozen=True)
class StudentConfig:
    """Stages 2 and 3, distillation and refinement: AdamW, poly schedule (Table 8, appendix D)."""

    size: str = _key("paper", STUDENT)
    # Where the DINOv2 encoder's weights come from: "auto", the size's published pretrained
    # encoder ("paper": facebook/dinov2-small; "small" and "tiny" have none and start from random
    # weights, which `check` and `run` warn about); "random", random weights by choice; else a
    # hub id or local folder of a transformers DINOv2 model (its config sets the architecture).
    encoder: str = _key(
        "auto", STUDENT, ("a hub id, a folder, 'auto' or 'random'", lambda v: v != "")
    )
    num_queries: int | None = _key(None, STUDENT, _POSITIVE)
    dropout: float = _key(0.1, STUDENT, _UNIT_INTERVAL)
    proj_dim: int = _key(128, STUDENT, _POSITIVE)
    lr_encoder: float = _key(5e-6, STUDENT, _POSITIVE)
    lr_decoder: float = _key(5e-5, STUDENT, _POSITIVE)
    betas: tuple[float, float] = _key((0.9, 0.999), STUDENT)
    weight_decay: float = _key(0.05, STUDENT, _NON_NEGATIVE)
    poly_power: float = _key(0.9, STUDENT, _POSITIVE)
    grad_clip: float = _key(0.1, STUDENT, _NON_NEGATIVE)  # l2 norm; 0 disables clipping
    batch_size: int = _key(8, STUDENT, _POSITIVE)
    distill_iters: int = _key(90000, STUDENT, _NON_NEGATIVE)
    refine_iters: int = _key(2000, STUDENT, _NON_NEGATIVE)
    # Refinement's learning rates are lr_encoder and lr_decoder times this. The paper gives none of
    # its own; restarting a trained student at the full rates, with a fresh AdamW, undoes part of
    # what it learned (BENCHMARKS.md, "Student refinement").
    refine_lr_scale: float = _key(0.1, STUDENT, _POSITIVE)


@dataclass(frozen=True)
class LossConfig:
    """Weights of the unified objective J and of the set-prediction loss inside it."""

    class_weight: float = _key(2.0, ALL, _NON_NEGATIVE)
    mask_weight: float = _key(5.0, ALL, _NON_NEGATIVE)
    dice_weight: float = _key(5.0, ALL, _NON_NEGATIVE)
    # box L1 and GIoU of the teacher's detector (GroundedSAM2 only; Grounding DINO's 5 and 2)
    box_weight: float = _key(5.0, ALL, _NON_NEGATIVE)
    giou_weight: float = _key(2.0, ALL, _NON_NEGATIVE)
    no_object_weight: float = _key(0.1, ALL, _NON_NEGATIVE)
    num_points: int = _key(12544, ALL, _POSITIVE)  # sampled points per mask loss
    lambda_semi: float = _key(1.0, STUDENT, _NON_NEGATIVE)
    lambda_pxl: float = _key(0.2, ALL, _NON_NEGATIVE)
    pseudo_label_threshold: float = _key(0.3, ALL, _UNIT_INTERVAL)
    # Mask-IoU above which a lower-scoring pseudo-label duplicates another (not in the paper;
    # a teacher's duplicate queries would otherwise be two targets for one object). null: off.
    pseudo_label_nms_iou: float | None = _key(0.5, ALL, _UNIT_INTERVAL)


@dataclass(frozen=True)
class RunConfig:
    """Where outputs go and how Lightning runs."""

    out_dir: str = _key("runs/default", NONE)
    seed: int = _key(0, ALL)
    accelerator: Accelerator = _key("auto", ALL)
    # Devices per node. castseg never starts processes itself: several devices (or nodes) need
    # one process each from torchrun or srun and strategy "ddp" (docs/distributed.md). Without
    # a launcher "auto" is one device (`run` and `check` say so when there are more, with the
    # torchrun command), and a count above 1 stops with that command.
    devices: int | Literal["auto"] = _key("auto", ALL, _DEVICES)
    num_nodes: int = _key(1, ALL, _POSITIVE)
    strategy: Literal["auto", "ddp"] = _key("auto", ALL)
    # Lightning's precision; "auto": bf16-mixed on a CUDA GPU that supports bf16 (on an H200 a
    # paper student step 0.52 s against 0.63 s in fp32 with TF32, a teacher step 5.6 s against
    # 4.9 s; BENCHMARKS.md, "castseg on a GPU"), 32-true elsewhere. Losses, matching costs and
    # sampler scores stay in float32 under every precision.
    precision: Precision = _key("auto", ALL)
    # CPU threads torch computes with (torch.set_num_threads); null: torch's default, one per
    # core. On a machine shared with other jobs set it to the cores you may use: torch's threads
    # spin waiting for each other. CPU results are bit-identical for the same thread count; a
    # resumed run may use another count (it says that its CPU results then differ).
    threads: int | None = _key(None, RESUMABLE, _POSITIVE)
    # torch.set_float32_matmul_precision before training, evaluation and pseudo-labelling;
    # "auto": "high" (TF32 tensor cores) on CUDA, torch's default "highest" elsewhere. It
    # changes results on a GPU, so it is part of the run's and the stage store's fingerprints.
    matmul_precision: MatmulPrecision = _key("auto", ALL)
    log_every: int = _key(10, NONE, _POSITIVE)
    eval_top_k: int = _key(100, ALL, _POSITIVE)
    checkpoint_every: int = _key(500, NONE, _POSITIVE)  # steps between resumable checkpoints
    max_nonfinite_steps: int = _key(
        20, NONE, _POSITIVE
    )  # consecutive skipped steps before stopping
    # train on pseudo-labels even when they are empty or far off the labeled set's density
    allow_weak_pseudo_labels: bool = _key(False, NONE)
    # Shared stage store: runs whose teacher-adaptation inputs (data, teacher, seed, stage-1 loss
    # and contrastive settings) match reuse its adapted teacher and pseudo-labels. A folder;
    # "auto": .cache beside the run folder (runs/.cache for runs/<name>); null: off.
    stage_store: str | None = _key("auto", NONE)


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: the data plus every stage's settings; only data.labeled_annotations is
    required."""

    data: DataConfig = _key(MISSING, ALL)
    teacher: TeacherConfig = _section(TeacherConfig, ALL)
    student: StudentConfig = _section(StudentConfig, STUDENT)
    loss: LossConfig = _section(LossConfig, ALL)
    contrastive: ContrastiveConfig = _section(ContrastiveConfig, L_PXL)
    run: RunConfig = _section(RunConfig, ALL)

    @property
    def teacher_contrastive(self) -> ContrastiveConfig:
        """L_pxl's settings in stage 1 (teacher adaptation)."""
        return self.contrastive if self.teacher.contrastive is None else self.teacher.contrastive
