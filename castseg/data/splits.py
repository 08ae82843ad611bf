"""Labeled / unlabeled splits of a COCO dataset and the id lists that store them."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from castseg.data.coco import load_coco_json

_NO_ANNOTATION = -1  # stratum of images without (non-crowd) annotations


def split_labeled(
    annotation_file: str | Path, labeled: float | int, *, seed: int, stratify: bool = False
) -> tuple[list[int], list[int]]:
    """Draw the labeled images of a dataset; returns (labeled ids, unlabeled ids), each sorted.

    labeled: a fraction in (0, 1) of the images (rounded, at least one) or a count >= 1.
    stratify: group the images by their most frequent category (ties: the smallest id) and draw
    from every group in proportion to its size, giving each group at least one image when the
    labeled count allows, so that rare classes are labeled too. The same seed gives the same split.
    """
    data = load_coco_json(annotation_file)
    ids = [int(record["id"]) for record in data["images"]]
    count = _labeled_count(labeled, len(ids), annotation_file)
    rng = np.random.default_rng(seed)
    if not stratify:
        chosen = [ids[i] for i in rng.permutation(len(ids))[:count]]
        return sorted(chosen), sorted(set(ids) - set(chosen))
    strata = _strata(data, ids)
    quotas = _quotas({key: len(members) for key, members in strata.items()}, count)
    chosen = []
    for key in sorted(strata):
        members = strata[key]
        chosen += [members[i] for i in rng.permutation(len(members))[: quotas[key]]]
    return sorted(chosen), sorted(set(ids) - set(chosen))


def write_id_list(path: str | Path, ids: Iterable[int]) -> None:
    """Write one image id per line (folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))


def read_id_list(path: str | Path, annotation_file: str | Path | None = None) -> list[int]:
    """Read image ids, one per line: an integer id or an image file name.

    Blank lines and lines starting with '#' are skipped. File names (the json's `file_name` or its
    last path component) and, when annotation_file is given, ids are checked against its images;
    unknown entries are an error that lists them.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"id list {path} does not exist")
    entries = [line.strip() for line in path.read_text().splitlines()]
    entries = [e for e in entries if e and not e.startswith("#")]
    if annotation_file is None:
        file_names = [e for e in entries if not e.isdigit()]
        if file_names:
            raise ValueError(
                f"id list {path} holds file names ({file_names[:3]}); pass the annotation file to "
                "resolve them to image ids"
            )
        return [int(e) for e in entries]
    images = load_coco_json(annotation_file)["images"]
    known = {int(record["id"]) for record in images}
    names = {Path(record["file_name"]).name: int(record["id"]) for record in images}
    names.update({record["file_name"]: int(record["id"]) for record in images})
    unknown = [e for e in entries if (int(e) not in known if e.isdigit() else e not in names)]
    if unknown:
        raise ValueError(
            f"id list {path}: {len(unknown)} entries are not images of {annotation_file}: "
            f"{unknown[:10]}"
        )
    return [int(e) if e.isdigit() else names[e] for e in entries]


def _labeled_count(labeled: float | int, total: int, source: str | Path) -> int:
    if isinstance(labeled, bool) or not isinstance(labeled, int | float):
        raise ValueError(f"labeled must be a fraction in (0, 1) or a count >= 1, got {labeled!r}")
    if isinstance(labeled, float):
        if not 0.0 < labeled < 1.0:
            raise ValueError(f"a labeled fraction must lie in (0, 1), got {labeled}")
        return max(1, round(labeled * total))
    if not 1 <= labeled <= total:
        raise ValueError(
            f"labeled count must be in [1, {total}] (images in {source}), got {labeled}"
        )
    return labeled


def _strata(data: dict, ids: list[int]) -> dict[int, list[int]]:
    """Image ids grouped by each image's most frequent (non-crowd) category."""
    per_image: dict[int, Counter] = {i: Counter() for i in ids}
    for ann in data.get("annotations", []):
        if not ann.get("iscrowd", 0) and ann.get("image_id") in per_image:
            per_image[ann["image_id"]][ann["category_id"]] += 1
    strata: dict[int, list[int]] = {}
    for image_id, counts in per_image.items():
        key = min(counts, key=lambda c: (-counts[c], c)) if counts else _NO_ANNOTATION
        strata.setdefault(key, []).append(image_id)
    return strata


def _quotas(sizes: dict[int, int], count: int) -> dict[int, int]:
    """Largest-remainder allocation of `count` over strata, at least one each when count allows."""
    total = sum(sizes.values())
    exact = {key: count * size / total for key, size in sizes.items()}
    quotas = {key: math.floor(share) for key, share in exact.items()}
    if count >= len(sizes):
        quotas = {key: max(1, q) for key, q in quotas.items()}
    by_remainder = sorted(sizes, key=lambda k: (quotas[k] - exact[k], k))
    while sum(quotas.values()) < count:
        key = next(k for k in by_remainder if quotas[k] < sizes[k])
        quotas[key] += 1
        by_remainder.remove(key)
        by_remainder.append(key)
    while sum(quotas.values()) > count:
        # only after the at-least-one rule, so a stratum above one image exists
        key = max((k for k in sizes if quotas[k] > 1), key=lambda k: (quotas[k] - exact[k], -k))
        quotas[key] -= 1
    return quotas
