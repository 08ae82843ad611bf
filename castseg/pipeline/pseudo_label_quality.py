"""How good a teacher's pseudo-labels of D_u are, reported at every pseudo-labelling step.

`assess_pseudo_labels` compares the instances per image of a cache with the labeled set's, stops
before training on pseudo-labels that are empty or far off that density (unless
`run.allow_weak_pseudo_labels`), and, when the unlabeled images carry ground truth (the demo's
synthetic world, or `data.split` of a labeled set), scores the pseudo-labels' mask AP against it.
The result is written beside the cache (`<cache>.quality.json`) for the report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from castseg.data.coco import (
    CategoryMap,
    CocoInstanceDataset,
    UnlabeledImageDataset,
    load_coco_json,
)
from castseg.evaluation.coco import evaluate_coco
from castseg.io import atomic_write
from castseg.pipeline.pseudo_label_files import read_cache_file
from castseg.pipeline.pseudo_labels import PseudoLabelCache
from castseg.pipeline.stage_table import PSEUDO_LABEL_PREFIX, pseudo_label_teacher
from castseg.result_tables import PseudoLabelRow
from castseg.runtime.distributed import is_rank_zero
from castseg.viz import save_prediction_grid

# Pseudo-labels with fewer or more instances per image than these multiples of the labeled set's
# are "far off": a teacher prompted with the wrong names, a threshold set too high or too low.
LOW_DENSITY = 0.2
HIGH_DENSITY = 5.0
QUALITY_SUFFIX = ".quality.json"


class WeakPseudoLabelsError(ValueError):
    """A teacher's pseudo-labels are empty or far off the labeled set's instance density."""


def labeled_density(dataset: CocoInstanceDataset) -> float:
    """Instances (crowd regions excluded) per image of a labeled set; NaN when it is empty."""
    if not len(dataset):
        return math.nan
    count = sum(not a.crowd for i in range(len(dataset)) for a in dataset.records[i].annotations)
    return count / len(dataset)


def unlabeled_ground_truth(dataset: UnlabeledImageDataset) -> CocoInstanceDataset | None:
    """The annotations of D_u's images when its COCO json carries any for them, else None."""
    if dataset.source.suffix != ".json":
        return None
    ids = set(dataset.image_ids)
    annotations = load_coco_json(dataset.source).get("annotations") or []
    if not any(a.get("image_id") in ids for a in annotations if isinstance(a, dict)):
        return None
    return CocoInstanceDataset(dataset.source, dataset.image_root, dataset.image_ids)


def pseudo_label_results(cache: PseudoLabelCache, categories: CategoryMap) -> list[dict]:
    """The cache's instances as COCO results records (RLE masks, class ids, scores)."""
    _, records, _ = read_cache_file(cache.path)
    return [
        {
            "image_id": image_id,
            "category_id": categories.to_coco(item["label"]),
            "segmentation": item["rle"],
            "score": item["score"],
        }
        for image_id, record in records.items()
        for item in record["instances"]
    ]


def assess_pseudo_labels(
    cache: PseudoLabelCache,
    unlabeled: UnlabeledImageDataset,
    labeled: CocoInstanceDataset,
    *,
    teacher: str,
    threshold: float,
    allow_weak: bool,
) -> PseudoLabelRow:
    """Report the pseudo-labels of `teacher` (a name for messages), score them where D_u has
    ground truth, and raise WeakPseudoLabelsError when they are empty or far off the labeled
    set's density and `allow_weak` is False (with it, print the same message as a warning)."""
    summary = cache.summary()
    images, instances = int(summary["images"]), int(summary["instances"])
    per_image = instances / images if images else 0.0
    reference = labeled_density(labeled)
    ap = ap50 = math.nan
    truth = unlabeled_ground_truth(unlabeled)
    if truth is not None:
        metrics = evaluate_coco(
            pseudo_label_results(cache, labeled.categories), truth.ground_truth()
        )
        ap, ap50 = metrics.ap, metrics.ap50
    row = PseudoLabelRow(teacher, images, per_image, reference, ap, ap50)
    if is_rank_zero():
        scored = (
            ""
            if truth is None
            else f"; mask AP {ap:.1f}, AP50 {ap50:.1f} against D_u's ground truth"
        )
        print(
            f"Pseudo-labels of the {teacher}: {per_image:.2f} instances per image on {images} "
            f"images (labeled set: {reference:.2f}){scored}"
        )
        with atomic_write(Path(f"{cache.path}{QUALITY_SUFFIX}")) as tmp:
            tmp.write_text(json.dumps(row.to_json()) + "\n")
    ratio = per_image / reference if reference > 0 else math.inf
    if instances and LOW_DENSITY <= ratio <= HIGH_DENSITY:
        return row
    message = (
        f"the {teacher} gave {instances} pseudo-labels on {images} unlabeled images "
        f"({per_image:.2f} per image) against {reference:.2f} instances per labeled image, "
        f"outside {LOW_DENSITY:g}x-{HIGH_DENSITY:g}x; check teacher.prompts (the names the "
        f"teacher looks for), loss.pseudo_label_threshold (now {threshold:g}) and the teacher's "
        f"AP (castseg eval)"
    )
    if not allow_weak:
        raise WeakPseudoLabelsError(
            f"{message}; --set run.allow_weak_pseudo_labels=true trains on them anyway"
        )
    if is_rank_zero():
        print(f"Warning: {message}; training on them as run.allow_weak_pseudo_labels is set")
    return row


def read_pseudo_label_rows(out_dir: Path) -> list[PseudoLabelRow]:
    """The quality of every pseudo-label cache in a run folder, in the order they were made."""
    files = sorted(Path(out_dir).glob(f"*.jsonl{QUALITY_SUFFIX}"), key=lambda p: p.stat().st_mtime)
    return [PseudoLabelRow.from_json(json.loads(path.read_text())) for path in files]


def save_pseudo_label_samples(
    out_dir: Path, unlabeled: UnlabeledImageDataset | None, path: Path, *, count: int = 4
) -> Path | None:
    """A PNG of the first `count` images of D_u: ground truth | the latest teacher's
    pseudo-labels. None when D_u has no ground truth or no cache was made."""
    caches = sorted(
        Path(out_dir).glob(f"{PSEUDO_LABEL_PREFIX}*.jsonl"), key=lambda p: p.stat().st_mtime
    )
    truth = None if unlabeled is None or not caches else unlabeled_ground_truth(unlabeled)
    if truth is None or not len(truth):
        return None
    cache = PseudoLabelCache.load(caches[-1])
    rows = []
    for index in range(min(count, len(truth))):
        sample = truth[index]
        assert sample.instances is not None
        pseudo = cache.instances(sample.image_id)
        gt = {"masks": sample.instances.masks, "labels": sample.instances.labels}
        labels = {"masks": pseudo.masks, "labels": pseudo.labels, "scores": pseudo.scores}
        rows.append((sample.image, gt, labels))
    title = f"pseudo-labels of {pseudo_label_teacher(caches[-1].stem)} (right)"
    names = list(truth.categories.names)
    return save_prediction_grid(path, rows, names, score_threshold=0.0, title=title)
