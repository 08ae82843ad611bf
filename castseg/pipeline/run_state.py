"""The state file of a run: which stages finished, so a rerun into the same folder skips them.

`<out_dir>/run_state.json`, written atomically when a stage finishes (none before):

    {"format": "castseg-run-state-v1",
     "fingerprint": {"config": {...}, "teacher": "<SHA-1 of the initial teacher weights>"},
     "threads": 2,
     "stages": {"<stage>": {"checkpoint": "teacher_finetuned.pt", "steps": 1000,
                            "skipped_steps": 0, "wall_s": 812.3, "rows": []},
                ...}}

Stages are named as in `castseg.pipeline.stage_table`. A stage's checkpoint is relative to the
run folder (null when the stage changes no weights, e.g. an evaluation) and its rows are the
results-table rows it produced (AP as null when undefined).

The fingerprint is what the run's results depend on (`castseg.pipeline.fingerprints`): the
config without the keys that declare they affect "none" (where the run writes, how often it logs
and checkpoints, when it gives up on non-finite losses, how many loader processes it uses, where
the shared stage store lies: none of them changes a number) or are "resumable", and the teacher's
initial weights. A run into a folder whose state has another fingerprint stops with a
`RunStateMismatchError` naming the differences; `restart=True` discards the old run instead.

`run.threads` ("resumable") changes CPU results in their last bits, yet a resumed run may change
it (e.g. to 1 on a machine that became shared): `threads` records the CPU thread count the state
was last written with, and `RunState.threads_note` says when a rerun computes with another.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from castseg.io import atomic_write_json
from castseg.pipeline.fingerprints import as_json, run_key
from castseg.result_tables import ModelRow
from castseg.runtime.distributed import is_rank_zero

RUN_STATE_FORMAT = "castseg-run-state-v1"
RUN_STATE_FILE = "run_state.json"


class RunStateMismatchError(ValueError):
    """The run folder holds a run with another config or teacher."""


@dataclass
class FinishedStage:
    """A stage of the run that is done: what a rerun needs to skip it."""

    name: str
    checkpoint: str | None  # relative to the run folder
    steps: int = 0
    skipped_steps: int = 0
    wall_s: float = 0.0
    rows: list[ModelRow] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "steps": self.steps,
            "skipped_steps": self.skipped_steps,
            "wall_s": self.wall_s,
            "rows": [row_to_json(row) for row in self.rows],
        }

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> FinishedStage:
        return cls(
            name,
            data["checkpoint"],
            data["steps"],
            data["skipped_steps"],
            data["wall_s"],
            [row_from_json(row) for row in data["rows"]],
        )


class RunState:
    """The finished stages of the run in `out_dir`, kept in `out_dir/run_state.json`."""

    def __init__(
        self,
        path: Path,
        fingerprint: dict[str, Any],
        stages: list[FinishedStage],
        threads: int | None = None,
    ) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self._stages = {stage.name: stage for stage in stages}
        self.earlier_threads = threads  # the CPU threads of the earlier run's last stage

    @property
    def key(self) -> str:
        """A short digest of the fingerprint: names this run in its resumable checkpoints."""
        return run_key(self.fingerprint)

    @classmethod
    def open(
        cls, out_dir: str | Path, fingerprint: dict[str, Any], *, teacher_known: bool = True
    ) -> RunState:
        """The state of the run in `out_dir`; a new, empty one when there is none, first written
        when a stage finishes. RunStateMismatchError when the folder holds a run with another
        fingerprint that finished a stage (a state with no finished stage holds nothing to keep,
        so a corrected rerun replaces it). Opening writes nothing.

        teacher_known: False when the teacher's weights are unknown (`castseg check --no-models`
        with hub weights); only the config is compared then.
        """
        path = Path(out_dir) / RUN_STATE_FILE
        fingerprint = as_json(fingerprint)  # tuples as lists, as read back
        if not path.is_file():
            return cls(path, fingerprint, [])
        data = _read(path)
        if not data["stages"]:
            return cls(path, fingerprint, [])
        if not teacher_known:
            fingerprint["teacher"] = data["fingerprint"].get("teacher")
        if data["fingerprint"] != fingerprint:
            differences = "; ".join(_differences(data["fingerprint"], fingerprint))
            raise RunStateMismatchError(
                f"{path.parent} holds a run with another config or teacher ({differences}): "
                "choose another run.out_dir, or rerun with --restart to discard that run"
            )
        stages = []
        for name, record in data["stages"].items():
            try:
                stages.append(FinishedStage.from_json(name, record))
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(
                    f"{path}: stage {name!r} is not a valid record ({err!r}); rerun with --restart"
                ) from err
        threads = data.get("threads")
        return cls(path, fingerprint, stages, threads if isinstance(threads, int) else None)

    @property
    def stage_names(self) -> list[str]:
        """The finished stages, in the order they finished."""
        return list(self._stages)

    def threads_note(self) -> str | None:
        """A line when this process computes with another number of CPU threads than the
        earlier run did (`run.threads` may change on resume)."""
        now = torch.get_num_threads()
        if self.earlier_threads is None or self.earlier_threads == now:
            return None
        return (
            f"resuming with {now} CPU threads where the earlier run used "
            f"{self.earlier_threads}: CPU results will differ from an uninterrupted run"
        )

    def finished(self, name: str) -> FinishedStage | None:
        """The record of stage `name` if it finished and its checkpoint (if any) still exists."""
        stage = self._stages.get(name)
        if stage is None or not (stage.checkpoint is None or self.checkpoint_path(stage).is_file()):
            return None
        return stage

    def checkpoint_path(self, stage: FinishedStage) -> Path:
        assert stage.checkpoint is not None
        return self.path.parent / stage.checkpoint

    def record(self, stage: FinishedStage) -> None:
        """Mark `stage` finished, replacing an older record of it, and rewrite the file."""
        self._stages[stage.name] = stage
        self._write()

    def _write(self) -> None:
        if not is_rank_zero():
            return  # every rank keeps the same state; one writes it
        atomic_write_json(
            self.path,
            {
                "format": RUN_STATE_FORMAT,
                "fingerprint": self.fingerprint,
                "threads": torch.get_num_threads(),
                "stages": {name: stage.to_json() for name, stage in self._stages.items()},
            },
        )


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); rerun with --restart") from err
    if not isinstance(data, dict) or data.get("format") != RUN_STATE_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"{path} is not a castseg run state: format {found!r}, expected "
            f"{RUN_STATE_FORMAT!r}; rerun with --restart"
        )
    if not isinstance(data.get("fingerprint"), dict) or not isinstance(data.get("stages"), dict):
        raise ValueError(f"{path} lacks 'fingerprint' or 'stages'; rerun with --restart")
    return data


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """'key: old → new' for every leaf that differs between two nested dicts (a key only one
    of them has shows as absent in the other)."""
    found = []
    for key in sorted(old.keys() | new.keys()):
        name = f"{prefix}{key}"
        if key not in old or key not in new:
            a, b = (repr(d[key]) if key in d else "(absent)" for d in (old, new))
            found.append(f"{name}: {a} → {b}")
        elif isinstance(old[key], dict) and isinstance(new[key], dict):
            found += _differences(old[key], new[key], f"{name}.")
        elif old[key] != new[key]:
            found.append(f"{name}: {old[key]!r} → {new[key]!r}")
    return found


def row_to_json(row: ModelRow) -> dict[str, Any]:
    """A results-table row as JSON data (undefined AP as null)."""
    data = asdict(row)
    for key in ("ap", "ap50"):
        data[key] = None if math.isnan(data[key]) else data[key]
    data["per_class"] = {k: None if math.isnan(v) else v for k, v in row.per_class.items()}
    return data


def row_from_json(data: dict[str, Any]) -> ModelRow:
    """The row `row_to_json` wrote (null AP as NaN)."""

    def number(value: float | None) -> float:
        return math.nan if value is None else float(value)

    return ModelRow(
        data["name"],
        data["parameters"],
        number(data["ap"]),
        number(data["ap50"]),
        data["wall_s"],
        {k: number(v) for k, v in data["per_class"].items()},
    )
