"""The pseudo-label cache on disk: its JSON-lines layout, the partial files and their merge.

The cache is a JSON-lines file. Its first line is a header

    {"format": "castseg-pseudo-labels-v1", "fingerprint": {...}, "num_classes": C,
     "settings": {"image_size": [H, W], "threshold": t, "nms_iou": iou, "top_k": k,
                  "selection": "per_query"}}

and every further line holds one image:

    {"image_id": 3, "height": H0, "width": W0, "instances": [
        {"rle": {"size": [H0, W0], "counts": "..."}, "label": 2, "score": 0.91,
         "class_probs": [... C+1 values, no-object last]}, ...]}

Generation appends to a partial file and flushes after every batch: `<path>.partial` for rank 0
(the only one of a single process), `<path>.rank<r>.partial` for rank r of a multi-process run,
each rank labelling every world_size-th image still missing. Once every image is labeled, rank 0
merges the partial files into `<path>.merging`, records in dataset order, and renames that to
`path` (atomic), then removes the partial files. An interrupted run resumes from the partial
files of all ranks, whatever the number of ranks was; a complete cache with the same fingerprint
and settings is reused without running the teacher.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from castseg.data.samples import Sample
from castseg.pipeline.fingerprints import as_json
from castseg.structures import Instances

PSEUDO_LABEL_FORMAT = "castseg-pseudo-labels-v1"
_DECIMALS = 6  # scores and probabilities: float32 digits beyond this only grow the file


def partial_path(path: str | Path, rank: int = 0) -> Path:
    """Where rank `rank` writes its images of the cache at `path` until the cache is complete."""
    path = Path(path)
    return path.with_name(path.name + (".partial" if rank == 0 else f".rank{rank}.partial"))


def merge_partials(path: Path, image_ids: list[int], expected: dict[str, Any]) -> None:
    """Rank 0: write the partial files' records in dataset order to `path`, atomically, and
    remove the partial files."""
    num_classes, records = read_partials(path, expected, truncate=False)
    missing = [image_id for image_id in image_ids if image_id not in records]
    if missing or num_classes is None:
        raise ValueError(
            f"the partial files of {path} lack image ids {missing[:10]} ({len(missing)} in all) "
            "after every rank finished"
        )
    merging = path.with_name(path.name + ".merging")
    with merging.open("w", encoding="utf-8") as f:
        header = {"format": PSEUDO_LABEL_FORMAT, **expected, "num_classes": num_classes}
        f.write(json.dumps(header) + "\n")
        for image_id in image_ids:
            f.write(json.dumps(records[image_id]) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(merging, path)
    for partial in partial_files(path):
        partial.unlink()


def partial_files(path: Path) -> list[Path]:
    """The partial files of the cache at `path`: rank 0's first, then the other ranks' files."""
    first = partial_path(path)
    others = sorted(path.parent.glob(f"{glob.escape(path.name)}.rank*.partial"))
    return ([first] if first.exists() else []) + others


def read_partials(
    path: Path, expected: dict[str, Any], *, truncate: bool
) -> tuple[int | None, dict[int, dict]]:
    """(num_classes, records by image id) of every partial file of the cache at `path`.

    Each file's fingerprint and settings must be `expected`, and the files must agree on C and
    not repeat an image. With `truncate`, a file's truncated last line is cut off and a file
    without a complete line is removed.
    """
    num_classes: int | None = None
    classes_from: Path | None = None
    records: dict[int, dict] = {}
    source: dict[int, Path] = {}
    for partial in partial_files(path):
        header, found, end = read_cache_file(partial)
        if header is None:
            if truncate:
                partial.unlink()
            continue
        check_matches(header["fingerprint"], header["settings"], expected, partial)
        if num_classes is not None and header["num_classes"] != num_classes:
            raise ValueError(
                f"{partial} holds {header['num_classes']} classes but {classes_from} holds "
                f"{num_classes}; delete the partial files of {path} to regenerate"
            )
        if num_classes is None:
            num_classes, classes_from = header["num_classes"], partial
        repeated = sorted(found.keys() & records.keys())
        if repeated:
            raise ValueError(
                f"{partial} and {source[repeated[0]]} both hold image id {repeated[0]}; delete "
                f"the partial files of {path} to regenerate"
            )
        records.update(found)
        source.update(dict.fromkeys(found, partial))
        if truncate:
            with partial.open("r+b") as f:
                f.truncate(end)
    return num_classes, records


def encode_record(sample: Sample, instances: Instances) -> dict[str, Any]:
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


def read_cache_file(path: Path) -> tuple[dict[str, Any] | None, dict[int, dict], int]:
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


def normalise(data: dict[str, Any]) -> dict[str, Any]:
    """`data` as it reads back from JSON (tuples become lists), so comparisons are fair."""
    try:
        return as_json(data)
    except TypeError as err:
        raise ValueError(f"the pseudo-label fingerprint must be JSON data: {err}") from err


def check_matches(
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
