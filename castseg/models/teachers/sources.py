"""Where a foundation model's weights come from: a hub id or a local directory, checked early.

`resolve_source` turns a typo in a local path into an error naming the path instead of a hub
lookup; `load_pretrained` adds the model's role and source to transformers' loading errors and
refuses weights that do not all fit (`castseg.models.pretrained.load_checked`);
`processor_normalisation` reads the mean and std a model's image processor normalises with,
without instantiating the processor (some need torchvision).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel, Sam2Config, Sam2VideoConfig
from transformers.image_processing_base import ImageProcessingMixin

from castseg.models.pretrained import load_checked

ModelT = TypeVar("ModelT", bound=PreTrainedModel)
log = logging.getLogger(__name__)


def _looks_like_path(name: str) -> bool:
    """True for names that cannot be hub ids ("owner/name"): absolute, relative, home, nested."""
    return (
        name.startswith((".", "/", "~"))
        or "\\" in name
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )


def resolve_source(name: str, role: str) -> str:
    """`name` as a local directory (checked) or a hub id.

    Raises FileNotFoundError when `name` is a path that does not exist and ValueError when it
    exists but holds no model (no config.json); `role` (e.g. "detector") names it in messages.
    """
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ValueError(f"the {role} {path} is not a model directory: it has no config.json")
        return str(path)
    if _looks_like_path(name):
        raise FileNotFoundError(f"the {role} directory {path} does not exist")
    return name


def load_config(source: str, role: str, expected: type[PretrainedConfig]) -> PretrainedConfig:
    """The config at `source`; ValueError naming it when its model type is not `expected`'s."""
    try:
        config = AutoConfig.from_pretrained(source)
    except OSError as err:
        raise OSError(f"cannot load the {role} config from {source!r}: {err}") from err
    if not isinstance(config, expected):
        raise ValueError(
            f"the {role} {source!r} is a {config.model_type!r} model, "
            f"expected {expected.model_type!r}"
        )
    return config


def load_segmenter_config(source: str, role: str = "segmenter") -> Sam2Config:
    """The SAM2 image-model config at `source`, also from a SAM2 *video* checkpoint.

    The facebook/sam2(.1)-hiera-* repositories publish their transformers weights as
    `Sam2VideoModel` (model_type "sam2_video"); its image path (Hiera encoder, FPN neck, prompt
    encoder, mask decoder) is a `Sam2Model`, as transformers' own mask-generation mapping loads
    it. ValueError naming `source` for any other model type.
    """
    try:
        config = AutoConfig.from_pretrained(source)
    except OSError as err:
        raise OSError(f"cannot load the {role} config from {source!r}: {err}") from err
    if isinstance(config, Sam2VideoConfig):
        log.info(
            "the %s %s is a SAM2 video checkpoint: loading its image model; the video memory "
            "weights (memory attention, memory encoder, object pointers) are not used",
            role,
            source,
        )
        return Sam2Config.from_dict(config.to_dict())
    if not isinstance(config, Sam2Config):
        raise ValueError(
            f"the {role} {source!r} is a {config.model_type!r} model, expected 'sam2' or "
            "'sam2_video'"
        )
    return config


def load_pretrained(
    model_class: type[ModelT], source: str, role: str, config: PretrainedConfig
) -> ModelT:
    """`model_class.from_pretrained(source, config=config)` in float32, with errors that name
    the role: OSError when transformers cannot load it, WeightsMismatchError when weights are
    missing, unexpected or of another shape (the video-memory weights of a SAM2 video
    checkpoint, which transformers itself drops for `Sam2Model`, excepted).

    float32 whatever dtype the checkpoint was saved in (transformers' "auto" would keep a bf16
    copy in bf16, which then meets the float32 pixels): the weights are the master copy that
    the run's precision works from, Lightning's precision plugin autocasting them for
    "*-mixed" and converting them for "*-true".
    """
    try:
        return load_checked(
            model_class, source, f"the {role} {source!r}", config=config, dtype=torch.float32
        )
    except OSError as err:
        raise OSError(f"cannot load the {role} weights from {source!r}: {err}") from err


def processor_settings(source: str, role: str) -> dict[str, Any]:
    """The image processor settings saved with a model (preprocessor or processor config)."""
    try:
        settings, _ = ImageProcessingMixin.get_image_processor_dict(source)
    except OSError as err:
        raise OSError(f"cannot read the {role} image processor of {source!r}: {err}") from err
    return settings


def processor_normalisation(settings: dict[str, Any], source: str, role: str) -> dict[str, list]:
    """{"mean": [3 floats], "std": [3 floats]} of an image processor's settings."""
    missing = [key for key in ("image_mean", "image_std") if key not in settings]
    if missing:
        raise ValueError(f"the {role} image processor of {source!r} has no {missing}")
    normalisation = {
        "mean": [float(v) for v in settings["image_mean"]],
        "std": [float(v) for v in settings["image_std"]],
    }
    check_normalisation(normalisation, f"the {role} image processor of {source!r}")
    return normalisation


def check_normalisation(normalisation: dict[str, Any], where: str) -> None:
    """ValueError naming `where` unless `normalisation` is {"mean": [3], "std": [3 positive]}."""
    mean, std = normalisation.get("mean"), normalisation.get("std")
    if (
        not isinstance(mean, list | tuple)
        or not isinstance(std, list | tuple)
        or len(mean) != 3
        or len(std) != 3
        or min(std) <= 0
    ):
        raise ValueError(
            f"{where}: normalisation must be {{'mean': [3 values], 'std': [3 positive values]}}, "
            f"got {normalisation}"
        )
