"""Mapping a segmentation model's labels onto a dataset's classes.

`resolve_label_ids` matches dataset class names to model label names (or an explicit
`label_map`), `label_assignment` turns the result into a [C+1, C'+1] pooling mask and
`map_class_logits` pools model class logits [..., C'+1] into dataset logits [..., C+1] by
logsumexp, so the softmax sums the model's probabilities per dataset class.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

LabelSpec = str | int | Sequence[str | int]


def _normalised_name(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def resolve_label_ids(
    class_names: Sequence[str],
    id2label: Mapping[int, str],
    label_map: Mapping[str, LabelSpec] | None = None,
) -> list[list[int]]:
    """Model label ids of each dataset class: [C] lists of ids into `id2label`.

    A class takes the model labels named `label_map[class name]` (a label name, an id, or a
    list of them) or else the labels whose name equals its own, ignoring case, spaces,
    underscores and hyphens. Raises ValueError listing the classes without a model label,
    unknown `label_map` keys or values, and model labels claimed by two classes.
    """
    label_map = dict(label_map or {})
    unknown_keys = sorted(set(label_map) - set(class_names))
    if unknown_keys:
        raise ValueError(
            f"label_map names {unknown_keys}, which are not dataset classes {list(class_names)}"
        )
    labels = dict(sorted((int(i), str(n)) for i, n in id2label.items()))
    by_name: dict[str, list[int]] = {}
    for label_id, name in labels.items():
        by_name.setdefault(_normalised_name(name), []).append(label_id)
    available = f"the model's labels are {labels}"

    def lookup(spec: str | int) -> list[int]:
        if isinstance(spec, int):
            if spec not in labels:
                raise ValueError(f"label_map: model label id {spec} does not exist; {available}")
            return [spec]
        ids = by_name.get(_normalised_name(spec), [])
        if not ids:
            raise ValueError(f"label_map: model label {spec!r} does not exist; {available}")
        return ids

    label_ids: list[list[int]] = []
    unmatched: list[str] = []
    for name in class_names:
        if name in label_map:
            spec = label_map[name]
            specs = [spec] if isinstance(spec, str | int) else list(spec)
            label_ids.append(sorted({i for s in specs for i in lookup(s)}))
        else:
            label_ids.append(by_name.get(_normalised_name(name), []))
            if not label_ids[-1]:
                unmatched.append(name)
    if unmatched:
        raise ValueError(
            f"dataset classes {unmatched} match no model label by name; give them in label_map "
            f"(class name -> model label name or id); {available}"
        )
    owners: dict[int, str] = {}
    for name, ids in zip(class_names, label_ids, strict=True):
        for i in ids:
            if i in owners:
                raise ValueError(
                    f"model label {i} ({labels[i]!r}) is mapped to both {owners[i]!r} and "
                    f"{name!r}; a model label can feed one dataset class only"
                )
            owners[i] = name
    return label_ids


def label_assignment(label_ids: Sequence[Sequence[int]], num_model_labels: int) -> Tensor:
    """[C+1, C'+1] bool: row c marks the model logits pooled into dataset class c.

    The last row (no-object) takes the model's no-object column C' and every unmapped label.
    """
    assignment = torch.zeros(len(label_ids) + 1, num_model_labels + 1, dtype=torch.bool)
    for c, ids in enumerate(label_ids):
        assignment[c, list(ids)] = True
    assignment[-1] = ~assignment[:-1].any(0)
    return assignment


def map_class_logits(logits: Tensor, assignment: Tensor) -> Tensor:
    """Model logits [..., C'+1] → dataset logits [..., C+1]: logsumexp over each row's labels."""
    pooled = torch.where(assignment, logits.unsqueeze(-2), float("-inf"))
    return torch.logsumexp(pooled, dim=-1)
