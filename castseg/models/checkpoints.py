"""Model checkpoints that are enough to predict: architecture, weights, classes and input size.

A checkpoint is a torch file holding plain data only (it loads with `weights_only=True`):

    format         "castseg-model-v2"
    model_args     the model's `config_dict()`: its architecture, rebuilt by
                   `castseg.models.registry.build_model` (no hub access needed)
    state_dict     castseg's own weights (everything outside the transformers models), on CPU
    hub_models     {module path: weights} of each transformers model inside the model (DINOv2,
                   MM-Grounding-DINO, SAM2, Mask2Former, EoMT), in the published layout that
                   `save_pretrained` writes (`castseg.models.hub_layout`), so any transformers
                   version loads them through its own conversion
    categories     [{"id", "name"}, ...] in class-index order
    image_size     [H, W] of the evaluation view (`ResizeView`)
    normalization  {"mean", "std"}: the statistics the model applies to [0, 1] RGB itself (its
                   `input_normalisation`), for the record; null when its parts normalise
                   differently (each part's statistics are in model_args)
    extra          caller's plain data (stage, step, config ...)

That is all `castseg predict` and `castseg export` read. A payload without "normalization"
(written before the key existed) loads with the ImageNet statistics.

A "castseg-model-v1" checkpoint (no hub_models) holds all weights under the names of the live
modules of the transformers version that saved it: they load as they are when they fit, and
otherwise with each transformers model's part read as the published layout.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from castseg.data.coco import CategoryMap
from castseg.io import atomic_write
from castseg.models.encoder import IMAGENET_MEAN, IMAGENET_STD
from castseg.models.hub_layout import hub_models, hub_state, live_state, split_state
from castseg.models.pretrained import WeightsMismatchError, describe_mismatch
from castseg.models.protocol import Normalisation, SegmentationModel
from castseg.models.registry import build_model

CHECKPOINT_FORMAT = "castseg-model-v2"
_FORMAT_V1 = "castseg-model-v1"  # all weights under the saving transformers version's names
_KEYS = ("model_args", "state_dict", "categories", "image_size")


def imagenet_normalization() -> Normalisation:
    """{"mean", "std"} of the ImageNet statistics, for [0, 1] RGB inputs."""
    return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


@dataclass
class LoadedCheckpoint:
    """A rebuilt model (eval mode) with what it needs to predict.

    normalization: {"mean", "std"} the model applies itself (None: its parts normalise
    differently); callers pass [0, 1] RGB.
    """

    model: SegmentationModel
    category_map: CategoryMap
    image_size: tuple[int, int]
    extra: dict[str, Any] = field(default_factory=dict)
    normalization: Normalisation | None = field(default_factory=imagenet_normalization)


def save_checkpoint(
    path: str | Path,
    model: SegmentationModel,
    *,
    category_map: CategoryMap,
    image_size: tuple[int, int],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write `model` to `path` atomically and return the path.

    image_size: (H, W) of the view the model is evaluated at. extra: plain data only (numbers,
    strings, lists, dicts, tensors) so the file loads without unpickling arbitrary objects.
    """
    num_classes = model.config_dict()["num_classes"]
    if len(category_map) != num_classes:
        raise ValueError(
            f"the model predicts {num_classes} classes but the category map has "
            f"{len(category_map)}: {list(category_map.names)}"
        )
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(f"image_size must be (H, W) with positive integers, got {image_size}")
    hub = hub_models(model)
    own, _ = split_state(model.state_dict(), list(hub))
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_args": model.config_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in own.items()},
        "hub_models": {prefix: hub_state(sub) for prefix, sub in hub.items()},
        "categories": [
            {"id": i, "name": n} for i, n in zip(category_map.ids, category_map.names, strict=True)
        ],
        "image_size": [int(image_size[0]), int(image_size[1])],
        "normalization": model.input_normalisation,
        "extra": dict(extra or {}),
    }
    path = Path(path)
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild the model of a checkpoint on `map_location`, in eval mode.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for a file that
    is not a castseg model checkpoint or whose weights do not fit its architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's own text runs to a page of advice about weights_only=False: not for this file.
        raise ValueError(
            f"{path} is not a castseg checkpoint: it holds Python objects besides tensors (a "
            "Lightning last.ckpt, or another program's file)"
        ) from err
    except (EOFError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path} is not a castseg checkpoint (cannot load it: {first})") from err
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if found not in (CHECKPOINT_FORMAT, _FORMAT_V1):
        raise ValueError(
            f"{path} is not a castseg model checkpoint: format {found!r}, "
            f"expected {CHECKPOINT_FORMAT!r}"
        )
    required = _KEYS if found == _FORMAT_V1 else (*_KEYS, "hub_models")
    missing = [key for key in required if key not in payload]
    if missing:
        raise ValueError(f"checkpoint {path} lacks the keys {missing}")

    try:
        model = build_model(payload["model_args"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint {path}: cannot rebuild the model: {err}") from err
    if found == _FORMAT_V1:
        state = _v1_state(model, payload["state_dict"], f"checkpoint {path}")
    else:
        state = _v2_state(model, payload["state_dict"], payload["hub_models"], f"checkpoint {path}")
    model.load_state_dict(state)
    category_map = CategoryMap.from_categories(payload["categories"], path)
    if len(category_map) != payload["model_args"]["num_classes"]:
        raise ValueError(
            f"checkpoint {path}: {len(category_map)} categories but the model predicts "
            f"{payload['model_args']['num_classes']} classes"
        )
    height, width = payload["image_size"]
    return LoadedCheckpoint(
        model=model.to(map_location).eval(),
        category_map=category_map,
        image_size=(int(height), int(width)),
        extra=dict(payload.get("extra", {})),
        normalization=_normalization(payload, path),
    )


def _mismatch(model: nn.Module, state: dict[str, Tensor]) -> str:
    """What in `state` does not fit `model.load_state_dict` (strict); "" when it all fits."""
    expected = model.state_dict()
    return describe_mismatch(
        [key for key in expected if key not in state],
        [key for key in state if key not in expected],
        [
            (key, state[key].shape, value.shape)
            for key, value in expected.items()
            if key in state and state[key].shape != value.shape
        ],
    )


def _v2_state(
    model: nn.Module,
    own: dict[str, Tensor],
    saved: dict[str, dict[str, Tensor]],
    name: str,
) -> dict[str, Tensor]:
    """The full state_dict of `model` from castseg's own weights and the published-layout
    weights of its transformers models, converted by the transformers version that runs.

    name: the checkpoint, as errors name it.
    """
    hub = hub_models(model)
    if set(saved) != set(hub):
        raise WeightsMismatchError(
            f"{name}: weights do not fit the model: they hold the transformers models "
            f"{sorted(saved)}, the model has {sorted(hub)}"
        )
    state = dict(own)
    for prefix, sub in hub.items():
        converted = live_state(sub, saved[prefix], f"{name}: {prefix}")
        state.update({f"{prefix}.{key}": value for key, value in converted.items()})
    problems = _mismatch(model, state)
    if problems:
        raise WeightsMismatchError(f"{name}: weights do not fit the model: {problems}")
    return state


def _v1_state(model: nn.Module, saved: dict[str, Tensor], name: str) -> dict[str, Tensor]:
    """The state_dict of a v1 checkpoint for `model`: as saved when it fits, else with each
    transformers model's weights read as the published layout (the names of a transformers
    version that did not rename them)."""
    problems = _mismatch(model, saved)
    if not problems:
        return saved
    hub = hub_models(model)
    own, parts = split_state(saved, list(hub))
    try:
        return _v2_state(model, own, parts, name)
    except WeightsMismatchError as err:
        raise WeightsMismatchError(
            f"{name}: weights do not fit the model: {problems} (nor read as the published "
            f"layout of {sorted(hub)}); a {_FORMAT_V1} file holds the module names of the "
            "transformers that saved it: load it with that version and save it again"
        ) from err


def _normalization(payload: dict[str, Any], path: Path) -> Normalisation | None:
    """The checkpoint's {"mean", "std"} (three floats each) or None as saved; ImageNet when it
    has no "normalization" (see the module doc)."""
    if "normalization" not in payload:
        return imagenet_normalization()
    value = payload["normalization"]
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or set(value) != {"mean", "std"}
        or any(not isinstance(value[key], list | tuple) or len(value[key]) != 3 for key in value)
    ):
        raise ValueError(
            f"checkpoint {path}: normalization must be {{'mean': [3 floats], 'std': [3 floats]}}, "
            f"got {value!r}"
        )
    return {key: [float(x) for x in value[key]] for key in ("mean", "std")}
