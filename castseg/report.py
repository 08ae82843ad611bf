"""A Markdown report of a CAST run: results tables, training curves and example predictions.

Training stages log with Lightning's CSVLogger (`castseg.training.metrics_log`). `write_report`
reads those files, draws the curves and the AP chart (`castseg.report_figures`), and writes
`report.md` with the results tables (`castseg.result_tables`) next to the PNGs it links, every
file atomically.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from castseg.io import atomic_write
from castseg.pipeline.stage_table import REFINE, STAGES, SUPERVISED_BASELINE
from castseg.report_figures import plot_ap, plot_losses, plot_monitors
from castseg.result_tables import (
    ModelRow,
    PseudoLabelRow,
    format_number,
    format_per_class_table,
    format_pseudo_label_table,
    format_table,
)
from castseg.training.metrics_log import metrics_file, read_metrics_csv

# What each results-table row is, for the report's opening sentences (from the stage table).
ROW_DESCRIPTIONS = {stage.row: stage.description for stage in STAGES if stage.row is not None}
# The rows the student's gain compares: CAST's final student against the supervised baseline.
CAST_STUDENT, SUPERVISED_STUDENT = REFINE.row, SUPERVISED_BASELINE.row


def narrative(
    rows: Sequence[ModelRow], *, resumed: Sequence[str] = (), predictions_of: str | None = None
) -> list[str]:
    """The report's opening sentences, generated from the results: what each row is, what its
    wall time covers, whether the run was resumed (`resumed`: the stages an earlier run had
    finished), the CAST student's gain over the supervised baseline, and which model
    predictions.png shows."""
    sentences = []
    described = [
        f"**{r.name}**, {ROW_DESCRIPTIONS[r.name]}" for r in rows if r.name in ROW_DESCRIPTIONS
    ]
    if described:
        sentences.append("The rows are " + "; ".join(described) + ".")
    sentences.append(
        "Wall time is the training time of a row's stages, pseudo-labelling included and "
        "evaluation not: the adapted teacher's includes its fine-tuning and the refined "
        "student's its knowledge transfer; a stage resumed after an interruption counts its "
        "last attempt only."
    )
    if resumed:
        sentences.append(
            f"This run was resumed: {', '.join(resumed)} had finished in an earlier run into the "
            "same folder, whose rows and wall times are kept."
        )
    else:
        sentences.append("Every stage ran in this run; none was resumed from an earlier one.")
    by_name = {r.name: r for r in rows}
    cast, supervised = by_name.get(CAST_STUDENT), by_name.get(SUPERVISED_STUDENT)
    if cast is not None and supervised is not None:
        gain, gain50 = cast.ap - supervised.ap, cast.ap50 - supervised.ap50
        if math.isnan(gain):
            sentences.append("Without a validation set the students' AP is undefined.")
        else:
            sentences.append(
                f"The CAST student scores {format_number(cast.ap, 1)} maskAP, {gain:+.1f} over the "
                f"supervised-only student ({format_number(supervised.ap, 1)}); AP50 {gain50:+.1f}."
            )
    elif cast is not None:
        sentences.append(
            "There is no supervised-only baseline in this run (`castseg run --baseline` trains "
            "one with the same initialisation and budget)."
        )
    if predictions_of is not None:
        sentences.append(
            f"predictions.png shows {predictions_of} on the first validation images, ground "
            "truth on the left."
        )
    return sentences


def write_report(
    out_dir: str | Path,
    *,
    title: str,
    rows: Sequence[ModelRow],
    stage_logs: Mapping[str, str | Path],
    predictions_png: str | Path | None,
    config: Mapping[str, Any],
    notes: Iterable[str] = (),
    story: Sequence[str] = (),
    pseudo_labels: Sequence[PseudoLabelRow] = (),
    pseudo_label_png: str | Path | None = None,
) -> Path:
    """Write out_dir/report.md and the PNGs it links (losses.png, monitors.png, ap.png).

    The report holds the title, the story (sentences, e.g. `narrative`'s) as a paragraph, the
    notes as a bullet list, the results table, AP per class,
    the plots, the predictions PNG (copied to out_dir/predictions.png when it lies elsewhere) and
    the config as a YAML block of plain values (dicts, lists, str, numbers, bools, None, paths).
    A stage whose log is missing or unreadable, and a plot with nothing to draw, are left out
    with a note saying why. Returns the path of report.md.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    notes = list(notes)
    readable: dict[str, Path] = {}
    for stage, log in stage_logs.items():
        try:
            read_metrics_csv(metrics_file(log))
        except (FileNotFoundError, ValueError) as err:
            notes.append(f"stage {stage!r} left out of the plots: {err}")
        else:
            readable[stage] = metrics_file(log)

    sections = [f"# {title}"]
    if story:
        sections.append(" ".join(story))
    if notes:
        sections.append("\n".join(f"- {note}" for note in notes))
    sections.append("## Results")
    if rows:
        sections.append(format_table(rows))
        if any(r.per_class for r in rows):
            sections += ["### AP per class", format_per_class_table(rows)]
        plot_ap(rows, out_dir / "ap.png")
        sections.append("![maskAP and AP50 per model](ap.png)")
    else:
        sections.append("No model was evaluated.")

    sections += pseudo_label_sections(pseudo_labels, pseudo_label_png, out_dir)
    sections.append("## Training")
    for name, plot, what in (
        ("losses.png", plot_losses, "losses"),
        ("monitors.png", plot_monitors, "false-negative rate and margin"),
    ):
        if plot(readable, out_dir / name):
            sections.append(f"![{what}]({name})")
        else:
            sections.append(f"No stage logged {what}.")

    if predictions_png is not None:
        sections.append("## Predictions")
        sections.append(_link_predictions(Path(predictions_png), out_dir))

    sections += ["## Configuration", f"```yaml\n{_yaml(config)}```"]
    report = out_dir / "report.md"
    with atomic_write(report) as tmp:
        tmp.write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    return report


def pseudo_label_sections(
    rows: Sequence[PseudoLabelRow], png: str | Path | None, out_dir: Path
) -> list[str]:
    """The report's "Pseudo-labels" section: the table of `rows` and the picture `png` (a file in
    out_dir) of pseudo-labelled images beside their ground truth; nothing without either."""
    sections = []
    if rows or png is not None:
        sections.append("## Pseudo-labels of D_u")
    if rows:
        sections.append(format_pseudo_label_table(rows))
    if png is not None and Path(png).is_file():
        link = Path(png).resolve().relative_to(out_dir.resolve()).as_posix()
        sections.append(f"![ground truth | pseudo-labels]({link})")
    return sections


def _link_predictions(png: Path, out_dir: Path) -> str:
    """A Markdown image link to png, copied to out_dir/predictions.png when outside out_dir."""
    if not png.is_file():
        return f"Predictions image not found: {png}"
    if png.resolve().is_relative_to(out_dir.resolve()):
        link = png.resolve().relative_to(out_dir.resolve()).as_posix()
    else:
        link = "predictions.png"
        with atomic_write(out_dir / link) as tmp:
            shutil.copyfile(png, tmp)
    return f"![ground truth | prediction]({link})"


def _yaml(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(_plain(config, "config"), sort_keys=False, allow_unicode=True)


def _plain(value: Any, key: str) -> Any:
    """Config values as YAML-safe builtins: paths as str, tuples as lists, numpy as Python."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ValueError(
        f"{key}: a {type(value).__name__} cannot be written as YAML; pass plain values "
        "(castseg.config.config_to_dict turns an ExperimentConfig into them)"
    )
