"""Model architectures by name, so a checkpoint can rebuild any model castseg trains.

A model's `config_dict()` holds plain data with an "architecture" name (the student's has none
and means "student"); `build_model` imports the architecture's builder lazily, so loading a
student checkpoint does not import the foundation-model code.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

ARCHITECTURES = {
    "student": "castseg.models.student:build_student",
    "grounded_sam2": "castseg.models.teachers.grounded_sam2:build_grounded_sam2",
    "hf_universal": "castseg.models.teachers.hf_universal:build_hf_universal",
    "ensemble": "castseg.models.teachers.ensemble:build_ensemble",
}


def build_model(model_args: dict[str, Any]) -> nn.Module:
    """Rebuild (with random weights) the model whose `config_dict()` is `model_args`."""
    args = dict(model_args)
    name = args.pop("architecture", "student")
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}, expected one of {sorted(ARCHITECTURES)}")
    module_name, function = ARCHITECTURES[name].split(":")
    return getattr(importlib.import_module(module_name), function)(**args)
