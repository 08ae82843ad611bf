"""What castseg asks of a model: the contract the student and every teacher keep.

Training, pseudo-labelling, checkpoints and deployment use the student and the teachers alike,
through `SegmentationModel`. Every model is an `nn.Module` that takes [B, 3, H, W] RGB in [0, 1]
and normalises it itself, so every caller passes the same kind of tensor; `input_normalisation`
says with which statistics.

`Embedder` is optional: a model that can compute `Predictions.embeddings` without its decoders
offers `embed`, and L_pxl uses it for the strong view; any other model is run whole.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from castseg.structures import Predictions

# {"mean": [3 floats], "std": [3 floats]}: a model's input is (image − mean) / std per channel,
# for image RGB in [0, 1].
Normalisation = dict[str, list[float]]


@runtime_checkable
class SegmentationModel(Protocol):
    """A model castseg trains, checkpoints and deploys (`castseg.models.student.Student` and
    the teachers in `castseg.models.teachers`)."""

    def __call__(self, images: Tensor) -> Predictions:
        """`forward`: segment [B, 3, H, W] RGB in [0, 1]."""
        ...

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by learning-rate group ("encoder", "decoder")."""
        ...

    def config_dict(self) -> dict[str, Any]:
        """Plain data that rebuilds the architecture (`castseg.models.registry.build_model`),
        with "num_classes"."""
        ...

    @property
    def input_normalisation(self) -> Normalisation | None:
        """The statistics the model normalises its [0, 1] RGB input with; None when its parts
        normalise it differently (each part's statistics are then in `config_dict`)."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """A model whose pixel embeddings can be computed alone."""

    def embed(self, images: Tensor) -> Tensor:
        """The `embeddings` of `forward(images)`, without what only the other outputs need."""
        ...


def common_normalisation(parts: list[Normalisation | None]) -> Normalisation | None:
    """The normalisation all `parts` share, as float lists; None when they differ or one has
    none."""
    stats = [
        None if part is None else {key: [float(v) for v in part[key]] for key in ("mean", "std")}
        for part in parts
    ]
    if stats[0] is None or any(other != stats[0] for other in stats[1:]):
        return None
    return stats[0]
