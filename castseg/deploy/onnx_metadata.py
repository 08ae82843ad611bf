"""What an exported .onnx file says about itself, so `castseg predict --onnx` needs nothing else.

The model's `metadata_props` hold JSON strings under these keys:

    castseg.format         "castseg-onnx-v1"
    castseg.categories     [{"id", "name"}, ...] in class-index order
    castseg.image_size     [H, W]: the fixed input size (the `ResizeView` that feeds the model)
    castseg.normalization  {"mean", "std"}: applied inside the graph, for the record only (null
                           when the model's parts normalise differently, as in a checkpoint)
    castseg.model_args     the exported model's `config_dict()`

The graph takes `images` [B, 3, H, W] float32 RGB in [0, 1] (B dynamic) and returns
`mask_logits` [B, K, h, w] and `class_logits` [B, K, C+1] (last = no object).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from castseg.data.coco import CategoryMap
from castseg.models.protocol import Normalisation

ONNX_FORMAT = "castseg-onnx-v1"
INPUT_NAME = "images"
OUTPUT_NAMES = ("mask_logits", "class_logits")
_PREFIX = "castseg."
_KEYS = ("format", "categories", "image_size", "normalization", "model_args")


@dataclass(frozen=True)
class OnnxMetadata:
    """Classes, input size and normalisation of an exported model."""

    category_map: CategoryMap
    image_size: tuple[int, int]
    normalization: Normalisation | None
    model_args: dict[str, Any]

    def to_props(self) -> dict[str, str]:
        """The `metadata_props` entries (key → JSON string) that describe the model."""
        values = {
            "format": ONNX_FORMAT,
            "categories": [
                {"id": i, "name": n}
                for i, n in zip(self.category_map.ids, self.category_map.names, strict=True)
            ],
            "image_size": list(self.image_size),
            "normalization": self.normalization,
            "model_args": self.model_args,
        }
        return {_PREFIX + key: json.dumps(value) for key, value in values.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str | Path) -> OnnxMetadata:
        """Parse `metadata_props`; ValueError naming `source` and the key when one is wrong."""
        found = props.get(_PREFIX + "format")
        if found != json.dumps(ONNX_FORMAT):
            raise ValueError(
                f"{source} is not an ONNX model exported by `castseg export`: its metadata "
                f"{_PREFIX}format is {found!r}, expected {json.dumps(ONNX_FORMAT)!r}"
            )
        values = {}
        for key in _KEYS[1:]:
            name = _PREFIX + key
            if name not in props:
                raise ValueError(f"{source}: the ONNX metadata lacks {name}")
            try:
                values[key] = json.loads(props[name])
            except json.JSONDecodeError as err:
                raise ValueError(f"{source}: ONNX metadata {name} is not JSON: {err}") from err
        size = values["image_size"]
        if not (
            isinstance(size, list)
            and len(size) == 2
            and all(isinstance(v, int) and v > 0 for v in size)
        ):
            raise ValueError(
                f"{source}: ONNX metadata {_PREFIX}image_size must be [H, W], got {size!r}"
            )
        try:
            category_map = CategoryMap.from_categories(values["categories"], source)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{source}: ONNX metadata {_PREFIX}categories is not a list of "
                f'{{"id", "name"}} records ({err})'
            ) from err
        return cls(
            category_map=category_map,
            image_size=(size[0], size[1]),
            normalization=values["normalization"],
            model_args=values["model_args"],
        )
