"""COCO-style mask AP: encode predictions as COCO results, score them with faster-coco-eval.

faster-coco-eval is a drop-in, pycocotools-compatible evaluator; pycocotools is used only when
it cannot be imported. No AP is computed here by hand: this module validates inputs, calls the
evaluator and reads its `stats` and per-category precision table.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_util

try:
    from faster_coco_eval import COCO
    from faster_coco_eval import COCOeval_faster as COCOeval
except ImportError:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

_RESULT_KEYS = ("image_id", "category_id", "segmentation", "score")


@dataclass(frozen=True)
class CocoMetrics:
    """Mask AP in percent (0-100). per_class maps category name to AP; NaN where a category
    has no ground-truth instance (AP undefined). Overall values are NaN when no category has one.
    """

    ap: float
    ap50: float
    ap75: float
    per_class: dict[str, float]


def encode_results(
    image_id: int,
    masks: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | Sequence[int],
    scores: torch.Tensor | np.ndarray | Sequence[float],
    category_map_to_coco: Callable[[int], int] | Sequence[int],
) -> list[dict[str, Any]]:
    """COCO results records of one image.

    masks: [N, H, W] bool; labels: [N] contiguous class indices in [0, C); scores: [N].
    category_map_to_coco maps a class index to its COCO category id (a function or a sequence
    indexed by class). Each record holds an RLE segmentation whose counts is a str (JSON-ready).
    """
    masks_np = np.asarray(torch.as_tensor(masks).bool().cpu(), dtype=np.uint8)
    labels_list = [int(x) for x in torch.as_tensor(labels).reshape(-1).tolist()]
    scores_list = [float(x) for x in torch.as_tensor(scores).reshape(-1).tolist()]
    if masks_np.ndim != 3 or not (len(masks_np) == len(labels_list) == len(scores_list)):
        raise ValueError(
            f"expected masks [N, H, W], labels [N], scores [N], got masks {masks_np.shape}, "
            f"{len(labels_list)} labels, {len(scores_list)} scores"
        )
    to_coco = category_map_to_coco if callable(category_map_to_coco) else None
    records = []
    if len(masks_np) == 0:
        return records
    rles = mask_util.encode(np.asfortranarray(masks_np.transpose(1, 2, 0)))
    for rle, label, score in zip(rles, labels_list, scores_list, strict=True):
        category_id = to_coco(label) if to_coco else category_map_to_coco[label]
        records.append(
            {
                "image_id": int(image_id),
                "category_id": int(category_id),
                "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode()},
                "score": score,
            }
        )
    return records


def evaluate_coco(
    results: list[dict[str, Any]] | str | Path, annotations: dict[str, Any] | str | Path
) -> CocoMetrics:
    """Mask AP ("segm") of results records against COCO ground truth.

    Both arguments are either loaded JSON or a path to a JSON file. Raises ValueError, naming the
    file or the offending ids, for malformed files and for results whose image or category ids
    are not in the annotations.
    """
    gt_name = str(annotations) if isinstance(annotations, str | Path) else "annotations"
    dt_name = str(results) if isinstance(results, str | Path) else "results"
    gt_data = load_json(annotations, "annotations")
    dt_data = load_json(results, "results")
    _check_annotations(gt_data, gt_name)
    _check_results(dt_data, gt_data, dt_name, gt_name)

    categories = sorted(gt_data["categories"], key=lambda c: c["id"])
    if not dt_data:
        # pycocotools cannot load an empty results list; nothing detected means AP 0.
        annotated = {a["category_id"] for a in gt_data["annotations"]}
        per_class = {c["name"]: 0.0 if c["id"] in annotated else math.nan for c in categories}
        overall = 0.0 if annotated else math.nan
        return CocoMetrics(overall, overall, overall, per_class)

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt = COCO()
        gt.dataset = copy.deepcopy(gt_data)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(dt_data))  # loadRes adds fields to the records
        evaluator = COCOeval(gt, dt, "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()

    # precision: [IoU thresholds T, recall R, categories K, area ranges A, max dets M]
    precision = evaluator.eval["precision"]
    names = {c["id"]: c["name"] for c in categories}
    per_class = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        valid = precision[:, :, k, 0, -1]
        valid = valid[valid > -1]
        per_class[names[cat_id]] = float(valid.mean()) * 100 if valid.size else math.nan
    ap, ap50, ap75 = (_percent(float(x)) for x in evaluator.stats[:3])
    return CocoMetrics(ap, ap50, ap75, per_class)


def format_metrics(metrics: CocoMetrics) -> str:
    """A plain-text table: overall AP / AP50 / AP75, then AP per class."""
    width = max([len("AP75"), *(len(name) for name in metrics.per_class)])
    lines = [f"{'AP':<{width}}  {metrics.ap:6.2f}", f"{'AP50':<{width}}  {metrics.ap50:6.2f}"]
    lines.append(f"{'AP75':<{width}}  {metrics.ap75:6.2f}")
    if metrics.per_class:
        lines += ["", f"{'class':<{width}}  {'AP':>6}"]
        lines += [f"{name:<{width}}  {ap:6.2f}" for name, ap in metrics.per_class.items()]
    return "\n".join(lines)


def _percent(value: float) -> float:
    """COCOeval reports -1 where no ground truth exists; that is NaN here, not a score."""
    return math.nan if value < 0 else value * 100


def load_json(source: Any, what: str) -> Any:
    """`source` itself, or the JSON in the file it names; errors name the file and `what`."""
    if not isinstance(source, str | Path):
        return source
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        with path.open() as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a valid JSON {what} file ({err})") from err


def _check_annotations(data: Any, name: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{name}: COCO annotations must be a JSON object")
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise ValueError(f"{name}: COCO annotations lack the keys {missing}")


def _check_results(results: Any, annotations: dict, name: str, gt_name: str) -> None:
    if not isinstance(results, list):
        raise ValueError(f"{name}: COCO results must be a JSON list of records")
    for i, record in enumerate(results):
        if not isinstance(record, dict) or any(k not in record for k in _RESULT_KEYS):
            raise ValueError(f"{name}: record {i} must be an object with keys {list(_RESULT_KEYS)}")
    image_ids = {img["id"] for img in annotations["images"]}
    category_ids = {cat["id"] for cat in annotations["categories"]}
    unknown_images = sorted({r["image_id"] for r in results} - image_ids)
    if unknown_images:
        raise ValueError(f"{name}: image ids {unknown_images} are not in {gt_name}")
    unknown_categories = sorted({r["category_id"] for r in results} - category_ids)
    if unknown_categories:
        raise ValueError(f"{name}: category ids {unknown_categories} are not in {gt_name}")
