"""The shared stage store: teacher adaptation computed once for every run that would repeat it.

The teacher stages (zero-shot evaluation, fine-tuning, self-training) and the adapted teacher's
pseudo-labels depend only on the data, the teacher, the seed and the stage-1 loss and
contrastive settings (`ExperimentConfig.teacher_contrastive`). `teacher_stage_fingerprint`
(`castseg.pipeline.fingerprints`, from what each config key declares it affects) digests exactly
those (plus how the run computes: precision, float32 matmul precision,
devices, evaluation top-k, the castseg version), so two runs that differ only in student
settings (or λ_semi, which stage 1 does not use) share them. Layout under `run.stage_store`
(default "auto": `.cache` beside the run folder, so `runs/.cache/` for `runs/<name>`; the runs
of `--seeds` and of `castseg ablate` use the store of their top folder):

    <key>/fingerprint.json                 what the key digests, readable
    <key>/teacher_adaptation/manifest.json the stages' records, every file's size and SHA-256
                            teacher_finetuned.pt, teacher_adapted.pt, <stage>/metrics.csv
    <key>/pseudo_labels/manifest.json      pseudo_labels_teacher_adapted.jsonl

An entry is written into a uniquely named temporary folder and renamed into place in one step,
so concurrent runs never see half an entry (the first to finish wins; the others drop theirs).
An entry whose manifest is unreadable or whose files are missing, truncated or altered is
removed with a warning and recomputed, never trusted. Files are hard-linked into the run
folder where the file system allows, else copied, always atomically.

The data files are digested by content (annotation jsons, id lists; an image folder by its
file names and sizes); image files are not, so an image edited in place needs a new store or
`run.stage_store: null`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from castseg.config import RunConfig
from castseg.io import atomic_write, atomic_write_json
from castseg.pipeline.fingerprints import STORE_FORMAT, file_digest, store_key
from castseg.pipeline.run_state import FinishedStage
from castseg.pipeline.stage_table import TEACHER_SELFTRAIN, TEACHER_STAGES
from castseg.runtime.distributed import barrier, is_rank_zero, on_rank_zero
from castseg.training.metrics_log import METRICS_FILE

TEACHER_PART = "teacher_adaptation"
PSEUDO_LABEL_PART = "pseudo_labels"
ADAPTED_PSEUDO_LABELS = f"{TEACHER_SELFTRAIN.pseudo_labels}.jsonl"
_MANIFEST = "manifest.json"


class StageStoreWarning(UserWarning):
    """A store entry was corrupt or partial and is recomputed."""


def store_root(run: RunConfig) -> Path | None:
    """The store folder `run.stage_store` names; None when sharing is off."""
    if run.stage_store is None:
        return None
    if run.stage_store == "auto":
        return Path(run.out_dir).parent / ".cache"
    return Path(run.stage_store)


class StageStore:
    """Verified, atomically published entries: `<root>/<key>/<part>/`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def entry(self, key: str, part: str) -> Path:
        return self.root / key / part

    def fetch(self, key: str, part: str) -> tuple[Path, dict[str, Any]] | None:
        """(folder, the data published with it) of a complete, intact entry; None when there
        is none. A corrupt or partial entry is removed with a `StageStoreWarning`."""
        folder = self.entry(key, part)
        if not folder.is_dir():
            return None
        manifest, problem = _verified(folder)
        if problem is not None:
            warnings.warn(
                f"stage store entry {folder} is corrupt or partial ({problem}); recomputing it",
                StageStoreWarning,
                stacklevel=2,
            )
            self._discard(folder)
            return None
        return folder, manifest["data"]

    def publish(
        self,
        key: str,
        part: str,
        files: Mapping[str, Path],
        *,
        data: Any,
        fingerprint: Mapping[str, Any],
    ) -> Path:
        """Store `files` (name in the entry → source) and `data` as entry `key/part`; an intact
        entry already there (e.g. from a concurrent run) is kept and ours dropped."""
        final = self.entry(key, part)
        if self.fetch(key, part) is not None:
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(final.parent / "fingerprint.json", dict(fingerprint))
        tmp = self.root / f".tmp-{uuid.uuid4().hex}"
        try:
            listed = {}
            for name, source in files.items():
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                listed[name] = {"size": target.stat().st_size, "sha256": file_digest(target)}
            manifest = {"format": STORE_FORMAT, "files": listed, "data": data}
            atomic_write_json(tmp / _MANIFEST, manifest)
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():
                    raise  # not a concurrent publisher: a real failure
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def _discard(self, folder: Path) -> None:
        trash = self.root / f".trash-{uuid.uuid4().hex}"
        try:
            os.rename(folder, trash)
        except OSError:
            return  # another run discarded it first
        shutil.rmtree(trash, ignore_errors=True)


class SharedTeacherStages:
    """The pipeline's side of the store: reuse or publish the teacher stages of a run in
    `out_dir` and the adapted teacher's pseudo-labels. Rank 0 touches the files; every rank
    gets the same answers."""

    def __init__(self, store: StageStore, fingerprint: dict[str, Any], out_dir: Path) -> None:
        self.store = store
        self.fingerprint = fingerprint
        self.key = store_key(fingerprint)
        self.out_dir = out_dir

    def fetch_teacher_stages(self) -> tuple[Path, list[FinishedStage]] | None:
        """The stored teacher stages, their files placed in out_dir; None when not stored."""

        def fetch() -> tuple[Path, dict[str, Any]] | None:
            found = self.store.fetch(self.key, TEACHER_PART)
            if found is not None:
                self._place(found[0])
            return found

        found = on_rank_zero(fetch)
        if found is None:
            return None
        folder, records = found
        return folder, [FinishedStage.from_json(s.name, records[s.name]) for s in TEACHER_STAGES]

    def publish_teacher_stages(self, stages: list[FinishedStage]) -> Path:
        """Store the finished teacher stages of out_dir (checkpoints, logs, records)."""
        files = {}
        for stage in stages:
            if stage.checkpoint is not None:
                files[stage.checkpoint] = self.out_dir / stage.checkpoint
            log = self.out_dir / stage.name / METRICS_FILE
            if stage.steps and log.is_file():
                files[f"{stage.name}/{METRICS_FILE}"] = log
        records = {stage.name: stage.to_json() for stage in stages}
        return self._publish(TEACHER_PART, files, records)

    def fetch_pseudo_labels(self) -> Path | None:
        """Place the stored pseudo-labels of the adapted teacher in out_dir; their entry."""

        def fetch() -> Path | None:
            found = self.store.fetch(self.key, PSEUDO_LABEL_PART)
            if found is None:
                return None
            self._place(found[0])
            return found[0]

        return on_rank_zero(fetch)

    def publish_pseudo_labels(self) -> Path | None:
        """Store out_dir's pseudo-labels of the adapted teacher (when complete)."""
        cache = self.out_dir / ADAPTED_PSEUDO_LABELS
        if not cache.is_file():
            return None
        return self._publish(PSEUDO_LABEL_PART, {ADAPTED_PSEUDO_LABELS: cache}, None)

    def _publish(self, part: str, files: dict[str, Path], data: Any) -> Path:
        if is_rank_zero():
            self.store.publish(self.key, part, files, data=data, fingerprint=self.fingerprint)
        barrier()
        return self.store.entry(self.key, part)

    def _place(self, folder: Path) -> None:
        """Hard-link (or copy) every file of an entry into out_dir, each atomically."""
        for name in _read_manifest(folder)["files"]:
            with atomic_write(self.out_dir / name) as tmp:
                try:
                    os.link(folder / name, tmp)
                except OSError:
                    shutil.copyfile(folder / name, tmp)


def _verified(folder: Path) -> tuple[dict[str, Any], str | None]:
    """(manifest, None) for an intact entry, else ({}, what is wrong)."""
    try:
        manifest = _read_manifest(folder)
    except (OSError, ValueError, KeyError) as err:
        return {}, f"manifest: {err}"
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            return {}, f"{name} is missing"
        if path.stat().st_size != expected["size"] or file_digest(path) != expected["sha256"]:
            return {}, f"{name} differs from its manifest"
    return manifest, None


def _read_manifest(folder: Path) -> dict[str, Any]:
    manifest = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        raise ValueError(f"not a {STORE_FORMAT} manifest")
    if not isinstance(manifest.get("files"), dict) or "data" not in manifest:
        raise ValueError("no 'files' or 'data'")
    return manifest
