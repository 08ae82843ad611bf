"""Teachers: foundation models (and castseg models) that return the student's `Predictions`.

`build_teacher(cfg.teacher, categories)` makes the teacher an experiment's config names. The
foundation-model code is imported only for the kind that needs it.
"""

from __future__ import annotations

from torch import nn

from castseg.config import TeacherConfig, TeacherSource, check_teacher, parse_label_map
from castseg.data.coco import CategoryMap


def build_teacher(cfg: TeacherConfig, categories: CategoryMap) -> nn.Module:
    """The pretrained teacher of `cfg` over the dataset's classes, in training mode.

    A `checkpoint` (a castseg checkpoint, of any kind) replaces the hub weights; its classes
    must be the dataset's. The keys each kind needs are the config's rules (`check_teacher`);
    what needs the files or the dataset (the checkpoint's classes, one prompt per class) is
    checked here.
    """
    check_teacher(cfg)  # the keys each kind needs (a config built without load_config)
    if cfg.kind == "ensemble":
        from castseg.models.teachers.ensemble import EnsembleTeacher

        members = [
            _build_source(member, categories, f"teacher.members[{i}]")
            for i, member in enumerate(cfg.members)
        ]
        return EnsembleTeacher(
            members,
            class_names=list(categories.names),
            iou=cfg.ensemble_iou,
            top_k=cfg.ensemble_top_k,
        ).train()
    return _build_source(cfg, categories, "teacher").train()


def _build_source(source: TeacherSource, categories: CategoryMap, key: str) -> nn.Module:
    names = list(categories.names)
    if source.checkpoint is not None:
        from castseg.models.checkpoints import load_checkpoint

        loaded = load_checkpoint(source.checkpoint)
        if list(loaded.category_map.names) != names:
            raise ValueError(
                f"{key}.checkpoint {source.checkpoint} predicts {list(loaded.category_map.names)}"
                f" but the dataset has {names}"
            )
        return loaded.model
    trainable = None if source.trainable is None else list(source.trainable)
    if source.kind == "grounded_sam2":
        from castseg.models.teachers.grounded_sam2 import GroundedSAM2Teacher

        prompts = None if source.prompts is None else list(source.prompts)
        if prompts is not None and len(prompts) != len(names):
            raise ValueError(
                f"{key}.prompts has {len(prompts)} entries but the dataset has {len(names)} "
                f"classes {names}"
            )
        return GroundedSAM2Teacher.from_pretrained(
            source.detector,
            source.segmenter,
            names,
            prompts=prompts,
            num_boxes=source.num_boxes,
            trainable=trainable,
            proj_dim=source.proj_dim,
            detector_size=source.detector_size,
            segmenter_size=source.segmenter_size,
        )
    from castseg.models.teachers.hf_universal import HFUniversalTeacher

    return HFUniversalTeacher.from_pretrained(
        source.model,
        names,
        label_map=parse_label_map(source, key),
        trainable=trainable,
        proj_dim=source.proj_dim,
        input_size=source.input_size,
    )
