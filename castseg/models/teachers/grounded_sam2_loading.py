"""The GroundedSAM2 teacher's sub-models and prompts: loaded pretrained, or rebuilt from a
checkpoint's config (random weights and zero prompt tokens, for its state_dict to fill in).

Pretrained, each model comes with its processor's settings (the detector's input size, both
normalisations) and the detector's tokenizer, needed here only: the prompt's tokens are kept as
the teacher's buffers.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

from transformers import (
    AutoTokenizer,
    MMGroundingDinoConfig,
    MMGroundingDinoForObjectDetection,
    Sam2Config,
    Sam2Model,
)

from castseg.models.teachers.prompts import ClassPrompts, chunk_class_prompts, resolve_prompts
from castseg.models.teachers.sam2_size import sam2_config_for_size
from castseg.models.teachers.sources import (
    load_config,
    load_pretrained,
    load_segmenter_config,
    processor_normalisation,
    processor_settings,
    resolve_source,
)


class SubModels(NamedTuple):
    """What `GroundedSAM2Teacher` is made of besides its settings (see its arguments)."""

    detector: MMGroundingDinoForObjectDetection
    segmenter: Sam2Model
    prompts: list[ClassPrompts]
    detector_size: Sequence[int]
    normalisation: dict[str, dict[str, list[float]]]


def load_sub_models(
    detector: str,
    segmenter: str,
    class_names: Sequence[str],
    prompts: Sequence[str] | None,
    detector_size: Sequence[int] | None,
    segmenter_size: int | None,
) -> SubModels:
    """Both pretrained models, the tokenised prompts and the processors' settings; the
    arguments and errors are `GroundedSAM2Teacher.from_pretrained`'s."""
    detector_source = resolve_source(detector, "detector")
    segmenter_source = resolve_source(segmenter, "segmenter")
    detector_config = load_config(detector_source, "detector", MMGroundingDinoConfig)
    segmenter_config = load_segmenter_config(segmenter_source)
    if segmenter_size is not None:
        segmenter_config = sam2_config_for_size(segmenter_config, segmenter_size)
    try:
        tokenizer = AutoTokenizer.from_pretrained(detector_source)
    except OSError as err:
        raise OSError(
            f"cannot load the detector tokenizer from {detector_source!r}: {err}"
        ) from err
    detector_settings = processor_settings(detector_source, "detector")
    segmenter_settings = processor_settings(segmenter_source, "segmenter")
    if detector_size is None:
        size = detector_settings.get("size") or {}
        if "shortest_edge" not in size or "longest_edge" not in size:
            raise ValueError(
                f"the detector image processor of {detector_source!r} has no "
                f"shortest_edge / longest_edge size ({size}); pass detector_size"
            )
        detector_size = (size["shortest_edge"], size["longest_edge"])
    class_prompts = chunk_class_prompts(
        tokenizer, class_names, prompts, max_tokens=detector_config.max_text_len
    )
    return SubModels(
        load_pretrained(
            MMGroundingDinoForObjectDetection, detector_source, "detector", detector_config
        ),
        load_pretrained(Sam2Model, segmenter_source, "segmenter", segmenter_config),
        class_prompts,
        detector_size,
        {
            "detector": processor_normalisation(detector_settings, detector_source, "detector"),
            "segmenter": processor_normalisation(segmenter_settings, segmenter_source, "segmenter"),
        },
    )


def rebuild_sub_models(
    *,
    num_classes: int,
    class_names: Sequence[str],
    prompts: Sequence[str],
    detector_config: dict[str, Any],
    segmenter_config: dict[str, Any],
    detector_size: Sequence[int],
    segmenter_size: int,
    text_length: int,
    normalisation: dict[str, dict[str, list[float]]],
    prompt_chunks: Sequence[int] | None,
) -> SubModels:
    """Random-weight models and zero-token prompts from `config_dict()` data (the arguments
    are `build_grounded_sam2`'s)."""
    if num_classes != len(class_names):
        raise ValueError(
            f"num_classes is {num_classes} but there are {len(class_names)} class names"
        )
    if text_length < 1:
        raise ValueError(f"text_length must be a positive token count, got {text_length}")
    resolved = resolve_prompts(class_names, prompts)
    sizes = [num_classes] if prompt_chunks is None else [int(n) for n in prompt_chunks]
    if sum(sizes) != num_classes or min(sizes) < 1:
        raise ValueError(f"prompt_chunks {sizes} must split the {num_classes} classes")
    bounds = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    chunks = [
        ClassPrompts.empty(class_names[a:b], resolved[a:b], text_length)
        for a, b in itertools.pairwise(bounds)
    ]
    segmenter = Sam2Config.from_dict(segmenter_config)
    return SubModels(
        MMGroundingDinoForObjectDetection(MMGroundingDinoConfig.from_dict(detector_config)),
        Sam2Model(sam2_config_for_size(segmenter, segmenter_size)),
        chunks,
        detector_size,
        normalisation,
    )
