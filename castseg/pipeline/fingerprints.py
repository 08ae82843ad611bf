"""What a run's results and its teacher stages depend on, derived from the config schema.

Every config key declares what it affects (`castseg.config.schema`). From that:

- `run_fingerprint`, kept in the run state (`castseg.pipeline.run_state`): the config without
  the "none" and "resumable" keys, and the teacher's initial weights. Its key (`run_key`, 16 hex
  digits) names the run in its resumable checkpoints.
- `teacher_stage_fingerprint`, of the shared stage store (`castseg.pipeline.stage_store`): the
  keys that change teacher adaptation ("all"), stage 1's L_pxl settings however they are written
  ("l_pxl", as `ExperimentConfig.teacher_contrastive`), the teacher's initial weights, the data
  files by content and the castseg version. Its key (`store_key`, 24 hex digits) names the
  store entry.

Both keys are `digest`s of the fingerprint as sorted JSON; `as_json` is a value as it reads back
from JSON (tuples as lists), so a fingerprint compares equal to one read from a file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, get_args

from castseg import __version__
from castseg.config import DataConfig, ExperimentConfig
from castseg.config.schema import ALL, L_PXL, NONE, RESUMABLE, Affects, affects

STORE_FORMAT = "castseg-stage-store-v1"
RUN_KEY_DIGITS = 16
STORE_KEY_DIGITS = 24
# The keys a run's results depend on, and those teacher adaptation reads.
_RUN: tuple[Affects, ...] = tuple(a for a in get_args(Affects) if a not in (NONE, RESUMABLE))
_TEACHER_STAGES: tuple[Affects, ...] = (ALL,)


def as_json(data: Any) -> Any:
    """`data` as it reads back from JSON (tuples become lists); TypeError for what JSON cannot
    hold."""
    return json.loads(json.dumps(data))


def digest(data: Any, digits: int = 64) -> str:
    """The first `digits` hex digits of the SHA-256 of `data` as JSON with sorted keys."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:digits]


def config_part(value: Any, keep: Collection[Affects]) -> Any:
    """A config (or section, or value) as plain data, sections as dicts and tuples as lists,
    with only the keys whose declaration is in `keep`."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            key.name: config_part(getattr(value, key.name), keep)
            for key in dataclasses.fields(value)
            if affects(key) in keep
        }
    if isinstance(value, tuple | list):
        return [config_part(v, keep) for v in value]
    return value


def run_fingerprint(cfg: ExperimentConfig, teacher_weights: str) -> dict[str, Any]:
    """What a run's results depend on: the config without its "none" and "resumable" keys, and
    the teacher.

    teacher_weights: a digest of the teacher's initial weights (`state_fingerprint`).
    """
    return {"config": config_part(cfg, _RUN), "teacher": teacher_weights}


def run_key(fingerprint: Mapping[str, Any]) -> str:
    """Names a run (its `run_fingerprint`) in its resumable checkpoints."""
    return digest(fingerprint, RUN_KEY_DIGITS)


def teacher_stage_fingerprint(cfg: ExperimentConfig, teacher_weights: str) -> dict[str, Any]:
    """What the teacher stages and the adapted teacher's pseudo-labels depend on.

    teacher_weights: the digest of the initial teacher's weights (`state_fingerprint`). The
    sections keep the order of earlier stores' fingerprint.json, with the data files after
    `data` and the teacher's weights after `teacher`.
    """
    sections = {}
    for section in dataclasses.fields(cfg):
        if affects(section) == L_PXL:  # stage 1's L_pxl settings, however they are written
            sections[section.name] = config_part(cfg.teacher_contrastive, _TEACHER_STAGES)
        elif affects(section) in _TEACHER_STAGES:
            sections[section.name] = config_part(getattr(cfg, section.name), _TEACHER_STAGES)
    return {
        "format": STORE_FORMAT,
        "castseg": __version__,
        "data": sections.pop("data"),
        "data_files": data_files_digest(cfg.data),
        "teacher": sections.pop("teacher"),
        "teacher_weights": teacher_weights,
        **sections,
    }


def store_key(fingerprint: Mapping[str, Any]) -> str:
    """Names a stage-store entry (its `teacher_stage_fingerprint`)."""
    return digest(fingerprint, STORE_KEY_DIGITS)


def data_files_digest(cfg: DataConfig) -> dict[str, str]:
    """SHA-256 of each data file the config names; an image folder by its names and sizes."""
    digests = {}
    for key in ("labeled_annotations", "unlabeled", "val_annotations", "labeled_ids"):
        value = getattr(cfg, key)
        if value is not None:
            digests[key] = _path_digest(Path(value))
    if cfg.unlabeled_ids is not None:
        digests["unlabeled_ids"] = _path_digest(Path(cfg.unlabeled_ids))
    return digests


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content."""
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _path_digest(path: Path) -> str:
    if path.is_dir():
        listing = sorted(
            (p.relative_to(path).as_posix(), p.stat().st_size)
            for p in path.rglob("*")
            if p.is_file()
        )
        return digest(listing)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    return file_digest(path)
