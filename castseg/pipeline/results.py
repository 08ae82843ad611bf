"""`results.json`: the results table of one finished run, what summaries over seeds read.

    {"format": "castseg-results-v1", "seed": 0, "baseline": true,
     "fingerprint": {...the run state's fingerprint...},
     "rows": [{"name": "teacher (zero-shot)", "parameters": 1234, "ap": 12.3, "ap50": 30.1,
               "wall_s": 4.2, "per_class": {...}}, ...]}

AP is in percent, null where undefined (no validation set). The fingerprint (config minus the
neutral keys, initial teacher weights; `castseg.pipeline.run_state`) tells a rerun whether the
run is the one it would make.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from castseg.io import atomic_write_json
from castseg.pipeline.run_state import row_from_json, row_to_json
from castseg.result_tables import ModelRow

RESULTS_FORMAT = "castseg-results-v1"
RESULTS_FILE = "results.json"


@dataclass
class RunResults:
    """The rows of one finished run, with its seed and fingerprint."""

    path: Path
    seed: int
    baseline: bool
    fingerprint: dict[str, Any]
    rows: list[ModelRow]


def write_results(
    out_dir: Path,
    rows: list[ModelRow],
    *,
    seed: int,
    baseline: bool,
    fingerprint: dict[str, Any],
) -> Path:
    """Write out_dir/results.json atomically; returns its path."""
    path = Path(out_dir) / RESULTS_FILE
    atomic_write_json(
        path,
        {
            "format": RESULTS_FORMAT,
            "seed": seed,
            "baseline": baseline,
            "fingerprint": fingerprint,
            "rows": [row_to_json(row) for row in rows],
        },
    )
    return path


def read_results(path: str | Path) -> RunResults:
    """Read a results.json; ValueError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: format {found!r}, expected {RESULTS_FORMAT!r}")
    try:
        rows = [row_from_json(row) for row in data["rows"]]
        return RunResults(path, data["seed"], data["baseline"], data["fingerprint"], rows)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a valid results record ({err!r})") from err
