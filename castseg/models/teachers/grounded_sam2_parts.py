"""The named parts of the GroundedSAM2 teacher, so stage 1 can choose which of them train.

Every parameter of the teacher belongs to exactly one part, found by the longest module-path
prefix below (tied detector heads are reachable under several names, all in "detector_heads").
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

PARTS: dict[str, tuple[str, ...]] = {
    "detector_image_encoder": ("detector.model.backbone",),
    "detector_text_encoder": ("detector.model.text_backbone", "detector.model.text_projection"),
    # feature enhancer (image-text fusion encoder) and language-guided query selection
    "detector_neck": (
        "detector.model.input_proj_vision",
        "detector.model.level_embed",
        "detector.model.encoder",
        "detector.model.enc_output",
        "detector.model.enc_output_norm",
        "detector.model.encoder_output_bbox_embed",
        "detector.model.encoder_output_class_embed",
    ),
    "detector_decoder": (
        "detector.model.decoder",
        "detector.model.query_position_embeddings",
        "detector.model.reference_points",
    ),
    "detector_heads": (
        "detector.class_embed",
        "detector.bbox_embed",
        "detector.model.decoder.class_embed",
        "detector.model.decoder.bbox_embed",
    ),
    "segmenter_image_encoder": ("segmenter.vision_encoder", "segmenter.no_memory_embedding"),
    # the FPN neck on the Hiera trunk: the features the masks and the embeddings share
    "segmenter_neck": ("segmenter.vision_encoder.neck",),
    "segmenter_prompt_encoder": ("segmenter.prompt_encoder", "segmenter.shared_image_embedding"),
    "segmenter_mask_decoder": ("segmenter.mask_decoder",),
    "projection_head": ("head",),
}
# Stage 1 default: decoders, heads, SAM2's FPN neck (so L_pxl adapts the features the masks are
# decoded from) and the projection head; the large encoders stay frozen.
DEFAULT_TRAINABLE = (
    "detector_decoder",
    "detector_heads",
    "segmenter_neck",
    "segmenter_mask_decoder",
    "projection_head",
)


def check_parts(names: Sequence[str]) -> tuple[str, ...]:
    """`names` as a tuple; ValueError listing the known parts for an unknown or repeated one."""
    unknown = [name for name in names if name not in PARTS]
    if unknown:
        raise ValueError(f"unknown teacher parts {unknown}; the parts are {list(PARTS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"teacher parts repeat in {list(names)}")
    return tuple(names)


def part_of(parameter_name: str) -> str:
    """The part holding the parameter `parameter_name` (a `named_parameters` name)."""
    best, best_length = None, -1
    for part, prefixes in PARTS.items():
        for prefix in prefixes:
            matches = parameter_name == prefix or parameter_name.startswith(prefix + ".")
            if matches and len(prefix) > best_length:
                best, best_length = part, len(prefix)
    if best is None:
        raise ValueError(f"parameter {parameter_name!r} belongs to no teacher part")
    return best


def parameters_by_part(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Each part's parameters, every shared (tied) parameter once, in the part it belongs to.

    Raises ValueError when a tied parameter is reachable from two parts.
    """
    parts: dict[str, list[nn.Parameter]] = {part: [] for part in PARTS}
    owner: dict[int, str] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        part = part_of(name)
        known = owner.get(id(parameter))
        if known is None:
            owner[id(parameter)] = part
            parts[part].append(parameter)
        elif known != part:
            raise ValueError(f"parameter {name!r} is shared by the parts {known!r} and {part!r}")
    return parts


def part_modules(model: nn.Module, part: str) -> list[nn.Module]:
    """The modules of a part that `model` has (prefixes naming bare parameters are skipped)."""
    modules = []
    for prefix in PARTS[part]:
        try:
            found = model.get_submodule(prefix)
        except AttributeError:
            continue
        modules.append(found)
    return modules
