"""Editing the weights of a model folder laid out like its hub repository."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

WeightsEditor = Callable[..., Path]


@pytest.fixture
def edited_weights(tmp_path: Path) -> WeightsEditor:
    """`edit(folder, drop=(), add={}, grow=()) -> copy`: a copy of a model folder whose
    model.safetensors lacks the keys `drop` (each must be there), has the extra tensors `add`,
    and has the tensors `grow` one row longer."""

    def edit(
        folder: Path,
        *,
        drop: tuple[str, ...] = (),
        add: dict[str, torch.Tensor] | None = None,
        grow: tuple[str, ...] = (),
    ) -> Path:
        copy = tmp_path / f"{Path(folder).name}_edited"
        shutil.copytree(folder, copy)
        weights = load_file(copy / "model.safetensors")
        for key in drop:
            del weights[key]
        weights.update(add or {})
        for key in grow:
            weights[key] = torch.cat([weights[key], weights[key][:1]])
        save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
        return copy

    return edit
