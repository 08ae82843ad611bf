"""The pseudo-label cache: a frozen teacher labels each unlabeled image once, on disk.

`generate_pseudo_labels` writes the cache (file layout, partial files and merge in
`castseg.pipeline.pseudo_label_files`), sharded across ranks under a process group;
`PseudoLabelCache` reads a complete cache and `PseudoLabeledDataset` pairs it with its images.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pycocotools import mask as mask_utils
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from castseg.data.coco import UnlabeledImageDataset
from castseg.data.samples import ImageRecord, Sample, collate_samples
from castseg.data.views import ResizeView
from castseg.interruption import Interrupted
from castseg.losses.pseudo_labels import filter_pseudo_labels
from castseg.pipeline.pseudo_label_files import (
    PSEUDO_LABEL_FORMAT,
    check_matches,
    encode_record,
    merge_partials,
    normalise,
    partial_path,
    read_cache_file,
    read_partials,
)
from castseg.progress_bar import progress_bar
from castseg.runtime.distributed import (
    all_gather_results,
    global_rank,
    is_rank_zero,
    on_rank_zero,
    shard_indices,
    world_size,
)
from castseg.runtime.inference import predict_images
from castseg.structures import Instances

__all__ = [
    "PseudoLabelCache",
    "PseudoLabeledDataset",
    "generate_pseudo_labels",
    "partial_path",
]


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
        header, records, end = read_cache_file(path)
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
    precision: str = "32-true",
) -> PseudoLabelCache:
    """Label every image of `dataset` with `teacher` into the cache at `path` (see module doc).

    teacher: returns `Predictions` for [B, 3, H, W] images; it sees each image through a
    `ResizeView(image_size)` and its instances (`predict_images`, `top_k`) are kept by
    `filter_pseudo_labels` at `threshold`, duplicates suppressed above mask IoU `nms_iou`
    (None keeps them); `precision` as in `predict_images`. fingerprint: JSON data identifying
    the teacher and the data (e.g. checkpoint hash, dataset split). An existing cache or partial
    file made with another fingerprint or other settings raises ValueError naming the differing
    keys.

    Under a process group (`castseg.runtime.distributed`) every rank calls this with the same
    arguments: the images still to label are dealt out across ranks, each rank appends its
    share to its own partial file, rank 0 merges them and every rank returns the merged cache.
    """
    path = Path(path)
    expected = normalise(
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
    _check_same_request(expected, dataset, path)
    plan = on_rank_zero(lambda: _plan(path, dataset, expected))
    if plan is not None:
        mine = [plan.todo[i] for i in shard_indices(len(plan.todo))]
        done = len(dataset) - len(plan.todo) if world_size() == 1 else 0
        if done and is_rank_zero():
            print(f"resuming the pseudo-label cache {path} at image {done}/{len(dataset)}")
        bar = progress_bar(
            total=done + len(mine),
            initial=done,
            desc=f"pseudo-labels {path.stem}" + ("" if world_size() == 1 else " (rank 0's share)"),
            unit="img",
            enabled=progress and is_rank_zero(),
        )
        loader = DataLoader(
            Subset(dataset, mine),
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=collate_samples,
        )
        shard = _ShardWriter(partial_path(path, global_rank()), expected, plan.num_classes)
        labeling = _Labeling(ResizeView(image_size), threshold, nms_iou, top_k, precision)
        records = [dataset.records[i] for i in mine]
        try:
            all_gather_results(lambda: labeling.run(teacher, loader, records, shard, bar))
        except Interrupted as err:
            at = f"image {done + shard.written}/{done + len(mine)}"
            raise err.during(f"pseudo-labelling into {path} at {at}") from None
        on_rank_zero(lambda: merge_partials(path, dataset.image_ids, expected))
    return PseudoLabelCache.load(path)


@dataclass(frozen=True)
class _Plan:
    """Dataset indices still to label, and the class count C of the partial files (if any)."""

    todo: list[int]
    num_classes: int | None


class _ShardWriter:
    """Appends image records to one rank's partial file, its header before the first record."""

    def __init__(self, path: Path, expected: dict[str, Any], num_classes: int | None) -> None:
        self.path = path
        self.expected = expected
        self.num_classes = num_classes
        self.written = 0  # records appended by this writer

    def append(self, records: list[tuple[dict[str, Any], int]]) -> None:
        """Write (`encode_record` line, C predicted by the teacher) records and flush."""
        has_header = self.path.exists()
        with self.path.open("a", encoding="utf-8") as f:
            for line, classes in records:
                if self.num_classes is None:
                    self.num_classes = classes
                elif classes != self.num_classes:
                    raise ValueError(
                        f"the teacher predicts {classes} classes but {self.path} was started "
                        f"with {self.num_classes}"
                    )
                if not has_header:
                    header = {
                        "format": PSEUDO_LABEL_FORMAT,
                        **self.expected,
                        "num_classes": classes,
                    }
                    f.write(json.dumps(header) + "\n")
                    has_header = True
                f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.written += len(records)


@dataclass(frozen=True)
class _Labeling:
    """How the teacher's predictions become pseudo-labels (see `generate_pseudo_labels`)."""

    view: ResizeView
    threshold: float
    nms_iou: float | None
    top_k: int
    precision: str

    def run(
        self,
        teacher: nn.Module,
        loader: DataLoader,
        expected: list[ImageRecord],
        shard: _ShardWriter,
        bar: tqdm,
    ) -> None:
        """Label the loader's images (the images of `expected`, in order) into `shard`.

        An image that fails to decode under `data.on_bad_record: skip` comes back as another
        image (see `CheckedImageDataset`): its own record is written empty, so the cache still
        lists every image once; training, meeting it again, also gets the other image, with that
        image's pseudo-labels.
        """
        expected_records = iter(expected)
        with bar:
            for samples in loader:
                # One pseudo-label per query: the teacher's most probable class for it.
                outputs = predict_images(
                    teacher,
                    [s.image for s in samples],
                    self.view,
                    top_k=self.top_k,
                    per_query=True,
                    precision=self.precision,
                )
                records = []
                for sample, out in zip(samples, outputs, strict=True):
                    kept = filter_pseudo_labels(
                        out["masks"].float(),
                        out["scores"],
                        out["class_probs"],
                        threshold=self.threshold,
                        nms_iou=self.nms_iou,
                    )
                    classes = out["class_probs"].shape[1] - 1
                    record = next(expected_records)
                    if sample.image_id != record.image_id:
                        empty = {"height": record.height, "width": record.width, "instances": []}
                        records.append(({"image_id": record.image_id, **empty}, classes))
                    else:
                        records.append((encode_record(sample, kept), classes))
                shard.append(records)
                bar.update(len(samples))


def _check_same_request(
    expected: dict[str, Any], dataset: UnlabeledImageDataset, path: Path
) -> None:
    """ValueError when the ranks ask for different caches (teacher, settings or images)."""
    images = hashlib.sha1(json.dumps(list(dataset.image_ids)).encode()).hexdigest()
    request = (str(path), expected, images)
    requests = all_gather_results(lambda: request)
    differing = [rank for rank, other in enumerate(requests) if other != requests[0]]
    if differing:
        raise ValueError(
            f"ranks {differing} ask for another pseudo-label cache than rank 0 ({path}): every "
            "rank must pass the same path, teacher fingerprint, settings and images"
        )


def _plan(path: Path, dataset: UnlabeledImageDataset, expected: dict[str, Any]) -> _Plan | None:
    """Rank 0: None when a complete matching cache exists; else what remains to label.

    Partial files of every rank of an earlier run (with any number of ranks) count, after their
    fingerprint and settings are checked and a truncated last line is cut off.
    """
    if path.exists():
        cache = PseudoLabelCache.load(path)
        check_matches(cache.fingerprint, cache.settings, expected, path)
        missing = sorted(set(dataset.image_ids) - set(cache.image_ids))
        if missing:
            raise ValueError(
                f"pseudo-label cache {path} lacks image ids {missing[:10]} ({len(missing)} in "
                "all) of the dataset; delete it to regenerate"
            )
        return None
    if len(dataset) == 0:
        raise ValueError("the unlabeled dataset has no images to pseudo-label")
    path.parent.mkdir(parents=True, exist_ok=True)
    num_classes, records = read_partials(path, expected, truncate=True)
    return _Plan(
        [i for i, image_id in enumerate(dataset.image_ids) if image_id not in records],
        num_classes,
    )
