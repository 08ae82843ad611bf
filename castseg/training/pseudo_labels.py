"""The pseudo-label cache: a frozen teacher labels each unlabeled image once, on disk.

The cache is a JSON-lines file. Its first line is a header

    {"format": "castseg-pseudo-labels-v1", "fingerprint": {...}, "num_classes": C,
     "settings": {"image_size": [H, W], "threshold": t, "nms_iou": iou, "top_k": k,
                  "selection": "per_query"}}

and every further line holds one image:

    {"image_id": 3, "height": H0, "width": W0, "instances": [
        {"rle": {"size": [H0, W0], "counts": "..."}, "label": 2, "score": 0.91,
         "class_probs": [... C+1 values, no-object last]}, ...]}

Generation appends to `<path>.partial` and flushes after every batch; it renames the file to
`path` once every image is labeled. An interrupted run resumes from the partial file; a
complete cache with the same fingerprint and settings is reused without running the teacher.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from castseg.data.coco import UnlabeledImageDataset
from castseg.data.samples import Sample, collate_samples
from castseg.data.views import ResizeView
from castseg.losses.pseudo_labels import filter_pseudo_labels
from castseg.structures import Instances
from castseg.training.inference import predict_images

PSEUDO_LABEL_FORMAT = "castseg-pseudo-labels-v1"
_DECIMALS = 6  # scores and probabilities: float32 digits beyond this only grow the file


def partial_path(path: str | Path) -> Path:
    """Where the cache at `path` is written until it is complete."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


class PseudoLabelCache:
    """Pseudo-labels of a set of images, read from a complete cache file (`load`)."""

    def __init__(self, path: Path, header: dict[str, Any], records: dict[int, dict]) -> None:
        self.path = path
        self.fingerprint: dict[str, Any] = header["fingerprint"]
        self.settings: dict[str, Any] = header["settings"]
        self.num_classes: int = header["num_classes"]
        self._records = records

    @classmethod
    def load(cls, path: str | Path) -> PseudoLabelCache:
        """Read a complete cache; ValueError naming the file when it is not one."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"pseudo-label cache {path} does not exist")
        header, records, end = _read(path)
        if header is None or end != path.stat().st_size:
            raise ValueError(f"pseudo-label cache {path} is empty or ends in a truncated line")
        return cls(path, header, records)

    @property
    def image_ids(self) -> list[int]:
        """Labeled image ids, in file order."""
        return list(self._records)

    def instances(self, image_id: int) -> Instances:
        """Pseudo-labels of one image at its original size: masks [M, H0, W0] bool, labels [M],
        scores [M] and class_probs [M, C+1]."""
        record = self._records.get(image_id)
        if record is None:
            raise KeyError(f"pseudo-label cache {self.path} has no image id {image_id}")
        height, width, items = record["height"], record["width"], record["instances"]
        if not items:
            masks = torch.zeros(0, height, width, dtype=torch.bool)
        else:
            decoded = mask_utils.decode([item["rle"] for item in items])  # [H0, W0, M]
            masks = torch.from_numpy(decoded.transpose(2, 0, 1).astype(bool))
        return Instances(
            masks=masks,
            labels=torch.tensor([item["label"] for item in items], dtype=torch.long),
            scores=torch.tensor([item["score"] for item in items], dtype=torch.float32),
            class_probs=torch.tensor(
                [item["class_probs"] for item in items], dtype=torch.float32
            ).reshape(len(items), self.num_classes + 1),
        )

    def summary(self) -> dict[str, int | float]:
        """Number of images and instances and the mean instance score (NaN without instances)."""
        scores = [item["score"] for r in self._records.values() for item in r["instances"]]
        mean = sum(scores) / len(scores) if scores else math.nan
        return {"images": len(self._records), "instances": len(scores), "mean_score": mean}


class PseudoLabeledDataset(Dataset[Sample]):
    """Unlabeled images with their cached pseudo-labels as `Sample.instances`."""

    def __init__(self, dataset: UnlabeledImageDataset, cache: PseudoLabelCache) -> None:
        missing = sorted(set(dataset.image_ids) - set(cache.image_ids))
        if missing:
            raise KeyError(
                f"pseudo-label cache {cache.path} has no labels for image ids {missing[:10]} "
                f"({len(missing)} in all); regenerate it for this dataset"
            )
        self.dataset = dataset
        self.cache = cache

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        sample = self.dataset[index]
        instances = self.cache.instances(sample.image_id)
        if instances.image_size != sample.image_size:
            raise ValueError(
                f"pseudo-labels of image id {sample.image_id} in {self.cache.path} are "
                f"{instances.image_size} but the image {sample.file_name} is {sample.image_size}"
            )
        return Sample(sample.image, instances, sample.image_id, sample.file_name)


def generate_pseudo_labels(
    teacher: nn.Module,
    dataset: UnlabeledImageDataset,
    path: str | Path,
    *,
    image_size: tuple[int, int],
    threshold: float = 0.3,
    nms_iou: float | None = 0.5,
    top_k: int = 100,
    batch_size: int = 8,
    num_workers: int = 0,
    fingerprint: Mapping[str, Any],
    progress: bool = True,
) -> PseudoLabelCache:
    """Label every image of `dataset` with `teacher` into the cache at `path` (see module doc).

    teacher: returns `Predictions` for [B, 3, H, W] images; it sees each image through a
    `ResizeView(image_size)` and its instances (`predict_images`, `top_k`) are kept by
    `filter_pseudo_labels` at `threshold`, duplicates suppressed above mask IoU `nms_iou`
    (None keeps them). fingerprint: JSON data identifying the teacher and
    the data (e.g. checkpoint hash, dataset split). An existing cache or partial file made with
    another fingerprint or other settings raises ValueError naming the differing keys.
    """
    path = Path(path)
    expected = _normalise(
        {
            "fingerprint": dict(fingerprint),
            "settings": {
                "image_size": list(image_size),
                "threshold": threshold,
                "nms_iou": nms_iou,
                "top_k": top_k,
                "selection": "per_query",
            },
        }
    )
    if path.exists():
        cache = PseudoLabelCache.load(path)
        _check_matches(cache.fingerprint, cache.settings, expected, path)
        missing = sorted(set(dataset.image_ids) - set(cache.image_ids))
        if missing:
            raise ValueError(
                f"pseudo-label cache {path} lacks image ids {missing[:10]} ({len(missing)} in "
                "all) of the dataset; delete it to regenerate"
            )
        return cache
    if len(dataset) == 0:
        raise ValueError("the unlabeled dataset has no images to pseudo-label")

    partial = partial_path(path)
    num_classes, done = _resume(partial, expected)
    todo = [i for i, image_id in enumerate(dataset.image_ids) if image_id not in done]
    loader = DataLoader(
        Subset(dataset, todo),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=collate_samples,
    )
    view = ResizeView(image_size)
    bar = tqdm(
        total=len(dataset),
        initial=len(dataset) - len(todo),
        desc="pseudo-labels",
        unit="img",
        disable=not progress,
    )
    with partial.open("a", encoding="utf-8") as f, bar:
        for samples in loader:
            images = [s.image for s in samples]
            # One pseudo-label per query: the teacher's most probable class for it.
            outputs = predict_images(teacher, images, view, top_k=top_k, per_query=True)
            for sample, out in zip(samples, outputs, strict=True):
                classes = out["class_probs"].shape[1] - 1
                if num_classes is None:
                    num_classes = classes
                    header = {"format": PSEUDO_LABEL_FORMAT, **expected, "num_classes": classes}
                    f.write(json.dumps(header) + "\n")
                elif classes != num_classes:
                    raise ValueError(
                        f"the teacher predicts {classes} classes but {partial} was started "
                        f"with {num_classes}"
                    )
                kept = filter_pseudo_labels(
                    out["masks"].float(),
                    out["scores"],
                    out["class_probs"],
                    threshold=threshold,
                    nms_iou=nms_iou,
                )
                f.write(json.dumps(_encode(sample, kept)) + "\n")
            f.flush()
            bar.update(len(samples))
        os.fsync(f.fileno())
    os.replace(partial, path)
    return PseudoLabelCache.load(path)


def _encode(sample: Sample, instances: Instances) -> dict[str, Any]:
    """One cache line: the image's kept instances with RLE masks (counts as str)."""
    height, width = sample.image_size
    items = []
    if len(instances):
        masks = instances.masks.numpy().transpose(1, 2, 0).astype(np.uint8)  # [H0, W0, M]
        rles = mask_utils.encode(np.asfortranarray(masks))
        for rle, label, score, probs in zip(
            rles, instances.labels, instances.scores, instances.class_probs, strict=True
        ):
            items.append(
                {
                    "rle": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
                    "label": int(label),
                    "score": round(float(score), _DECIMALS),
                    "class_probs": [round(p, _DECIMALS) for p in probs.tolist()],
                }
            )
    return {"image_id": sample.image_id, "height": height, "width": width, "instances": items}


def _read(path: Path) -> tuple[dict[str, Any] | None, dict[int, dict], int]:
    """(header, records by image id, bytes of complete lines) of a cache or partial file.

    A last line without its newline (an interrupted write) is ignored; the header is None when
    the file has no complete line.
    """
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    lines = data[:end].splitlines()
    if not lines:
        return None, {}, end
    header = _parse(lines[0], path, 1)
    if not isinstance(header, dict) or header.get("format") != PSEUDO_LABEL_FORMAT:
        found = header.get("format") if isinstance(header, dict) else header
        raise ValueError(
            f"{path} is not a castseg pseudo-label cache: format {found!r:.80}, expected "
            f"{PSEUDO_LABEL_FORMAT!r}"
        )
    if not (
        isinstance(header.get("fingerprint"), dict)
        and isinstance(header.get("settings"), dict)
        and isinstance(header.get("num_classes"), int)
    ):
        raise ValueError(f"{path}: the header needs 'fingerprint', 'settings' and 'num_classes'")
    records: dict[int, dict] = {}
    for number, line in enumerate(lines[1:], start=2):
        record = _parse(line, path, number)
        if not isinstance(record, dict) or not {"image_id", "instances"} <= record.keys():
            raise ValueError(f"{path}, line {number}: expected an image record")
        if record["image_id"] in records:
            raise ValueError(f"{path}, line {number}: image id {record['image_id']} repeats")
        records[record["image_id"]] = record
    return header, records, end


def _parse(line: bytes, path: Path, number: int) -> Any:
    try:
        return json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}, line {number}: not valid JSON ({err})") from err


def _resume(partial: Path, expected: dict[str, Any]) -> tuple[int | None, set[int]]:
    """(num_classes, image ids done) of a partial file, cut back to its complete lines.

    (None, empty set) when there is nothing to resume; the file is then removed.
    """
    if not partial.exists():
        return None, set()
    header, records, end = _read(partial)
    if header is None:
        partial.unlink()
        return None, set()
    _check_matches(header["fingerprint"], header["settings"], expected, partial)
    with partial.open("r+b") as f:
        f.truncate(end)
    return header["num_classes"], set(records)


def _normalise(data: dict[str, Any]) -> dict[str, Any]:
    """`data` as it reads back from JSON (tuples become lists), so comparisons are fair."""
    try:
        return json.loads(json.dumps(data))
    except TypeError as err:
        raise ValueError(f"the pseudo-label fingerprint must be JSON data: {err}") from err


def _check_matches(
    fingerprint: dict[str, Any], settings: dict[str, Any], expected: dict[str, Any], path: Path
) -> None:
    differing = [
        f"{group}.{key}"
        for group, found in (("fingerprint", fingerprint), ("settings", settings))
        for key in sorted(found.keys() | expected[group].keys())
        if found.get(key) != expected[group].get(key)
    ]
    if differing:
        raise ValueError(
            f"pseudo-label cache {path} was made for another teacher, data or settings: "
            f"{', '.join(differing)} differ (cached {fingerprint} {settings}, requested "
            f"{expected['fingerprint']} {expected['settings']}); delete it to regenerate"
        )
