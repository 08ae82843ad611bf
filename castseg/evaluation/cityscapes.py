"""Cityscapes instance AP / AP50 with the official cityscapesscripts evaluation.

Predictions are exported in the official result format: per frame a text file
`<frame>_pred.txt` with lines `<mask png> <labelId> <score>` and one binary PNG per instance.
They are scored by cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling with its own
parameters (IoU thresholds 0.5:0.05:0.95, strict `>`; ground-truth instances under 100 pixels
ignored): its ground-truth reading (instances2dict), result parsing (readPredInfo), AP per class
and threshold (evaluateMatches) and averaging (computeAverages). Only the per-frame matching
(assignGt2Preds) is re-implemented here: cityscapesscripts 2.3.0 calls np.in1d there, which
numpy 2.4 removed. `match_frame` builds the same records (tests compare it with the original).

Nothing depends on CITYSCAPES_DATASET / CITYSCAPES_RESULTS or the working directory, and the
official caches (gtInstances.json, matches.json) are never written.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling import (
    args as official_args,
)
from cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling import (
    computeAverages,
    evaluateMatches,
    filterGtInstances,
    readPredInfo,
    setInstanceLabels,
)
from cityscapesscripts.evaluation.instances2dict import instances2dict
from cityscapesscripts.helpers.labels import id2label
from cityscapesscripts.helpers.labels import labels as cityscapes_labels
from PIL import Image
from pycocotools import mask as mask_utils

from castseg.data.cityscapes import THING_LABEL_IDS, frame_key, instance_file_for, instance_files
from castseg.data.coco import load_coco_json

_VOID_LABEL_IDS = [label.id for label in cityscapes_labels if label.ignoreInEval]


@dataclass(frozen=True)
class CityscapesMetrics:
    """Official instance AP (mean over IoU 0.5:0.95) and AP50, in percent (0-100).

    per_class / per_class_ap50 map the 8 class names to their values; NaN where a class has no
    ground-truth instance. Overall values average the classes that have one.
    """

    ap: float
    ap50: float
    per_class: dict[str, float]
    per_class_ap50: dict[str, float]


def write_frame_results(
    out_dir: str | Path,
    key: str,
    masks: torch.Tensor | np.ndarray,
    label_ids: Sequence[int],
    scores: Sequence[float],
) -> Path:
    """Export one frame's instances in the official format; returns the text file.

    masks: [N, H, W] bool; label_ids: [N] Cityscapes labelIds (not train ids); scores: [N].
    Writes out_dir/<key>_pred.txt and out_dir/<key>_<i>.png (1-bit, set inside the mask).
    """
    out_dir = Path(out_dir)
    masks_np = np.asarray(torch.as_tensor(masks).bool().cpu())
    label_list = [int(x) for x in label_ids]
    score_list = [float(x) for x in scores]
    if masks_np.ndim != 3 or not len(masks_np) == len(label_list) == len(score_list):
        raise ValueError(
            f"frame {key}: expected masks [N, H, W], labels [N], scores [N], got masks "
            f"{masks_np.shape}, {len(label_list)} labels, {len(score_list)} scores"
        )
    unknown = sorted(set(label_list) - set(id2label))
    if unknown:
        raise ValueError(f"frame {key}: {unknown} are not Cityscapes labelIds")
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (mask, label_id, score) in enumerate(zip(masks_np, label_list, score_list, strict=True)):
        name = f"{key}_{i}.png"
        Image.fromarray(mask).save(out_dir / name)  # mode "1": small and quick to write
        lines.append(f"{name} {label_id} {score!r}\n")
    text_file = out_dir / f"{key}_pred.txt"
    text_file.write_text("".join(lines))
    return text_file


def score_results(results_dir: str | Path, gt_files: Sequence[str | Path]) -> CityscapesMetrics:
    """Score exported results: every ground-truth frame needs exactly one <frame>*.txt below
    results_dir (the official look-up); mask paths in it are relative to the text file."""
    results_dir = Path(results_dir).absolute()
    args = copy.deepcopy(official_args)  # the official thresholds; no path in it is used
    args.predictionPath = str(results_dir)
    args.quiet = True
    setInstanceLabels(args)
    texts = sorted(results_dir.rglob("*.txt"))
    with _official_errors("reading the ground truth"):
        gt_instances = instances2dict([str(Path(p)) for p in gt_files])
    matches = {}
    for gt_file in gt_files:
        key = frame_key(gt_file)
        found = [path for path in texts if path.name.startswith(key)]
        if len(found) != 1:
            raise ValueError(
                f"{results_dir}: expected one {key}*.txt result file for {gt_file}, "
                f"found {len(found)}"
            )
        with _official_errors(f"reading {found[0]}"):
            pred_info = readPredInfo(str(found[0]), args)
        frame_gt = filterGtInstances(gt_instances[os.path.abspath(gt_file)], args)
        matches[key] = match_frame(frame_gt, gt_file, pred_info, args.instLabels)
    try:
        with _official_errors("computing AP"):
            aps = evaluateMatches(matches, args)
    except IndexError as err:
        # cityscapesScripts issue #89: a class with ground truth whose every prediction is
        # ignored (on void or group pixels) and none matched crashes evaluateMatches.
        raise ValueError(
            "cityscapesscripts' evaluateMatches failed (its issue #89: a class has ground truth "
            "but all its predictions lie on ignored regions); evaluate more images or drop "
            "those predictions"
        ) from err
    averages = computeAverages(aps, args)
    classes = averages["classes"]
    return CityscapesMetrics(
        ap=_percent(averages["allAp"]),
        ap50=_percent(averages["allAp50%"]),
        per_class={name: _percent(classes[name]["ap"]) for name in args.instLabels},
        per_class_ap50={name: _percent(classes[name]["ap50%"]) for name in args.instLabels},
    )


def evaluate_cityscapes(
    predictions: Mapping[str, Mapping[str, Any]] | Iterable[tuple[str, Mapping[str, Any]]],
    ground_truth: str | Path | Sequence[str | Path],
    *,
    label_ids: Sequence[int] = THING_LABEL_IDS,
    results_dir: str | Path | None = None,
) -> CityscapesMetrics:
    """Official AP of per-frame predictions.

    predictions: frame name → {"masks": [N, H, W] bool, "labels": [N] class indices, "scores":
        [N]} (what castseg.runtime.inference.predict_images returns), as a mapping or an
        iterable of pairs (a generator keeps one frame in memory at a time). A frame name is any
        Cityscapes file name of the frame or its key, e.g. 'frankfurt_000000_000294'. Every
        ground-truth frame needs an entry (an empty one when nothing was found).
    ground_truth: a Cityscapes root (its gtFine/val instanceIds PNGs) or a list of those PNGs.
    label_ids: class index → Cityscapes labelId (default: the 8 things in labelId order, which
        is castseg's class order for cityscapes_{train,val}.json).
    results_dir: keep the exported results there (an empty or new folder); default: a
        temporary folder, removed afterwards.
    """
    gt_files = _ground_truth_files(ground_truth)
    items = predictions.items() if isinstance(predictions, Mapping) else predictions

    def frames() -> Iterator[tuple[str, Any, list[int], Any]]:
        for name, found in items:
            labels = [int(x) for x in torch.as_tensor(found["labels"]).reshape(-1).tolist()]
            bad = [x for x in labels if not 0 <= x < len(label_ids)]
            if bad:
                raise ValueError(f"frame {name}: class indices {bad} outside [0, {len(label_ids)})")
            ids = [label_ids[x] for x in labels]
            scores = torch.as_tensor(found["scores"], dtype=torch.float64).reshape(-1).tolist()
            yield str(name), found["masks"], ids, scores

    return _export_and_score(frames(), gt_files, results_dir)


def evaluate_cityscapes_results(
    results: list[dict[str, Any]],
    annotations: str | Path | dict[str, Any],
    root: str | Path,
    *,
    results_dir: str | Path | None = None,
) -> CityscapesMetrics:
    """Official AP of COCO results records (castseg's EvalResult.results) on the images of a
    `castseg convert cityscapes` json; its category ids are labelIds, its file names relative
    to the Cityscapes root, whose gtFine PNGs are the ground truth."""
    data = load_coco_json(annotations) if isinstance(annotations, str | Path) else annotations
    images = {record["id"]: record for record in data["images"]}
    by_image: dict[int, list[dict]] = {image_id: [] for image_id in images}
    for i, record in enumerate(results):
        if record.get("image_id") not in by_image:
            raise ValueError(f"results record {i}: image id {record.get('image_id')} is unknown")
        by_image[record["image_id"]].append(record)

    def frames() -> Iterator[tuple[str, Any, list[int], list[float]]]:
        for image_id, records in by_image.items():
            record = images[image_id]
            shape = (0, int(record["height"]), int(record["width"]))
            rles = [r["segmentation"] for r in records]
            masks = np.moveaxis(mask_utils.decode(rles), -1, 0) if rles else np.zeros(shape, bool)
            ids = [int(r["category_id"]) for r in records]
            yield record["file_name"], masks, ids, [float(r["score"]) for r in records]

    gt_files = _ground_truth_files(
        [instance_file_for(root, record["file_name"]) for record in images.values()]
    )
    return _export_and_score(frames(), gt_files, results_dir)


def match_frame(
    gt_instances: Mapping[str, list[dict]],
    gt_file: str | Path,
    pred_info: Mapping[str, Mapping[str, Any]],
    inst_labels: Sequence[str],
) -> dict[str, dict]:
    """Overlaps of one frame's predictions with its ground truth, as assignGt2Preds records.

    gt_instances: class name → instance dicts (instances2dict, filtered to inst_labels);
    pred_info: mask PNG path → {"labelID", "conf"} (readPredInfo). Returns {"groundTruth":
    class → instances with their "matchedPred", "prediction": class → predictions with their
    "matchedGt"}; predictions of other classes and empty masks are skipped.
    """
    with Image.open(gt_file) as png:
        gt = np.array(png)
    ground_truth = {
        name: [{**instance, "matchedPred": []} for instance in instances]
        for name, instances in gt_instances.items()
    }
    predictions: dict[str, list[dict]] = {name: [] for name in inst_labels}
    for mask_file, info in pred_info.items():
        name = id2label[int(info["labelID"])].name
        if name not in inst_labels:
            continue
        with Image.open(mask_file) as png:
            mask = np.array(png.convert("L")) != 0
        if mask.shape != gt.shape:
            raise ValueError(
                f"{mask_file}: mask is {mask.shape}, its ground truth {gt_file} {gt.shape}"
            )
        pixels = int(np.count_nonzero(mask))
        if not pixels:
            continue
        # pixels per ground-truth value under the mask: every overlap in one pass over the mask
        values, counts = np.unique(gt[mask], return_counts=True)
        overlap = dict(zip(values.tolist(), counts.tolist(), strict=True))
        prediction = {
            "imgName": mask_file,
            "predID": sum(len(p) for p in predictions.values()),
            "labelID": int(info["labelID"]),
            "pixelCount": pixels,
            "confidence": info["conf"],
            "voidIntersection": sum(overlap.get(v, 0) for v in _VOID_LABEL_IDS),
        }
        matched_gt = []
        for k, instance in enumerate(gt_instances[name]):
            intersection = overlap.get(instance["instID"], 0)
            if intersection:
                matched_gt.append({**instance, "intersection": intersection})
                ground_truth[name][k]["matchedPred"].append(
                    {**prediction, "intersection": intersection}
                )
        predictions[name].append({**prediction, "matchedGt": matched_gt})
    return {"groundTruth": ground_truth, "prediction": predictions}


def _export_and_score(
    frames: Iterable[tuple[str, Any, Sequence[int], Any]],
    gt_files: Sequence[Path],
    results_dir: str | Path | None,
) -> CityscapesMetrics:
    """Write every frame's results, check they cover the ground truth, then score them."""
    expected = {frame_key(p): p for p in gt_files}
    if len(expected) != len(gt_files):
        raise ValueError("the ground-truth files name some frames twice")
    with contextlib.ExitStack() as stack:
        if results_dir is None:
            out_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cs_eval_")))
        else:
            out_dir = Path(results_dir)
            if out_dir.exists() and any(out_dir.iterdir()):
                raise ValueError(f"results folder {out_dir} is not empty")
        written: set[str] = set()
        for name, masks, ids, scores in frames:
            key = frame_key(name)
            if key not in expected:
                raise ValueError(f"prediction for {name}: frame {key} is not in the ground truth")
            if key in written:
                raise ValueError(f"frame {key} has predictions twice")
            write_frame_results(out_dir, key, masks, ids, scores)
            written.add(key)
        missing = sorted(expected.keys() - written)
        if missing:
            raise ValueError(
                f"{len(missing)} ground-truth frames have no predictions (give an empty entry "
                f"where nothing was found): {missing[:10]}"
            )
        return score_results(out_dir, gt_files)


def _ground_truth_files(ground_truth: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(ground_truth, str | Path):
        return instance_files(ground_truth, "val")
    files = [Path(p) for p in ground_truth]
    absent = [str(p) for p in files if not p.is_file()]
    if absent:
        raise FileNotFoundError(f"ground-truth instanceIds PNGs not found: {absent[:10]}")
    return files


@contextlib.contextmanager
def _official_errors(doing: str) -> Iterator[None]:
    """cityscapesscripts prints its errors and calls sys.exit; turn that into a ValueError."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    except SystemExit:
        message = printed.getvalue().strip() or "no message"
        raise ValueError(f"cityscapes evaluation failed while {doing}: {message}") from None


def _percent(value: float) -> float:
    return math.nan if math.isnan(float(value)) else float(value) * 100
