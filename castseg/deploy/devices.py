"""The `--device` of the deployment commands: "cpu", or "cuda" when a GPU is present."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Importable without torch, for the commands' --help.
DEVICES = ("cpu", "cuda")


def torch_device(name: str) -> torch.device:
    """The torch device called `name`; ValueError for an unknown name or "cuda" without a GPU."""
    import torch

    if name not in DEVICES:
        raise ValueError(f"device must be one of {list(DEVICES)}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"--device cuda: torch {torch.__version__} sees no CUDA GPU; use --device cpu"
        )
    return torch.device(name)
