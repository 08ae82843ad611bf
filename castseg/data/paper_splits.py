"""The labeled / unlabeled splits of the CAST paper and split files published by prior work.

Paper (supplementary Table 7 / appendix A): Cityscapes 10 % of the 2 975 train images labeled
(298 / 2 677), and 5 % and 30 % for the label-fraction study, following Guided Distillation
(Berrada et al., 2024); ADE20K a stratified 1 000 labeled / 2 537 unlabeled images of the 20 210
train images. The paper does not say how the 2 537 unlabeled images were chosen: here the labeled
images are a stratified draw (castseg.data.splits, stratified by each image's most frequent
class) and the unlabeled ones a uniform draw from the remaining images, both seeded.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from castseg.data.cityscapes import frame_key
from castseg.data.coco import load_coco_json
from castseg.data.splits import split_labeled, write_id_list

CITYSCAPES_PERCENTS = (5, 10, 30)
ADE20K_LABELED = 1000
ADE20K_UNLABELED = 2537


@dataclass(frozen=True)
class Split:
    """A named split: sorted labeled and unlabeled image ids of one annotation file."""

    name: str
    labeled: list[int]
    unlabeled: list[int]


def percent_count(percent: float, total: int) -> int:
    """percent % of total images, halves rounded up, at least one: 10 % of 2 975 → 298."""
    if not 0 < percent < 100:
        raise ValueError(f"a labeled percentage must lie in (0, 100), got {percent}")
    return max(1, int(np.floor(percent * total / 100 + 0.5)))


def cityscapes_split(annotation_file: str | Path, percent: float, *, seed: int) -> Split:
    """percent % of the images labeled (uniformly drawn), all others unlabeled."""
    total = len(load_coco_json(annotation_file)["images"])
    labeled, unlabeled = split_labeled(annotation_file, percent_count(percent, total), seed=seed)
    return Split(f"cityscapes_{percent:g}pct_seed{seed}", labeled, unlabeled)


def ade20k_split(
    annotation_file: str | Path,
    *,
    seed: int,
    labeled: int = ADE20K_LABELED,
    unlabeled: int | None = ADE20K_UNLABELED,
) -> Split:
    """`labeled` images drawn stratified by class, then `unlabeled` drawn uniformly from the rest
    (None: all the rest). Images in neither list are not used by the experiment."""
    labeled_ids, rest = split_labeled(annotation_file, labeled, seed=seed, stratify=True)
    if unlabeled is None:
        unlabeled_ids = rest
    else:
        if not 0 <= unlabeled <= len(rest):
            raise ValueError(
                f"{annotation_file}: {unlabeled} unlabeled images requested but only {len(rest)} "
                f"remain after drawing {labeled} labeled ones"
            )
        rng = np.random.default_rng([seed, 1])  # independent of the labeled draw's stream
        unlabeled_ids = sorted(rest[i] for i in rng.permutation(len(rest))[:unlabeled])
    return Split(
        f"ade20k_{len(labeled_ids)}_{len(unlabeled_ids)}_seed{seed}", labeled_ids, unlabeled_ids
    )


def external_split(split_file: str | Path, annotation_file: str | Path) -> Split:
    """Labeled images named in a split file as prior work publishes them; all others unlabeled.

    One image per line (blank lines and '#' comments skipped), named by the json's file_name,
    its last component, that without its extension, or, for Cityscapes, any file name of the
    frame (Guided Distillation lists 'aachen_000000_000019_gtFine_instanceIds.png').
    """
    split_file = Path(split_file)
    if not split_file.is_file():
        raise FileNotFoundError(f"split file {split_file} does not exist")
    entries = [line.strip() for line in split_file.read_text().splitlines()]
    entries = [e for e in entries if e and not e.startswith("#")]
    if not entries:
        raise ValueError(f"split file {split_file} names no images")
    images = load_coco_json(annotation_file)["images"]
    index = _name_index(images)
    resolved = [_resolve(entry, index) for entry in entries]
    unknown = [e for e, image_id in zip(entries, resolved, strict=True) if image_id is None]
    if unknown:
        raise ValueError(
            f"split file {split_file}: {len(unknown)} entries name no single image of "
            f"{annotation_file}: {unknown[:10]}"
        )
    counts = Counter(resolved)
    repeated = [e for e, image_id in zip(entries, resolved, strict=True) if counts[image_id] > 1]
    if repeated:
        raise ValueError(f"split file {split_file} names some images twice: {repeated[:10]}")
    labeled = sorted(i for i in resolved if i is not None)
    unlabeled = sorted({int(record["id"]) for record in images} - set(labeled))
    return Split(split_file.stem, labeled, unlabeled)


def write_split(split: Split, out_dir: str | Path) -> Path:
    """Write out_dir/<name>/labeled.txt and unlabeled.txt (one image id per line); the folder."""
    folder = Path(out_dir) / split.name
    write_id_list(folder / "labeled.txt", split.labeled)
    write_id_list(folder / "unlabeled.txt", split.unlabeled)
    return folder


def _name_index(images: Iterable[dict]) -> dict[str, int | None]:
    """Every name an image can be given by → its id; None where a name fits several images."""
    index: dict[str, int | None] = {}
    for record in images:
        path = Path(record["file_name"])
        names = {record["file_name"], path.name, path.stem}
        with contextlib.suppress(ValueError):  # only Cityscapes file names have a frame key
            names.add(frame_key(path))
        image_id = int(record["id"])
        for name in names:
            index[name] = image_id if index.get(name, image_id) == image_id else None
    return index


def _resolve(entry: str, index: dict[str, int | None]) -> int | None:
    if entry in index:
        return index[entry]
    try:
        return index.get(frame_key(entry))
    except ValueError:
        return None
