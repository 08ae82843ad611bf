"""A Markdown report of a CAST run: results tables, training curves and example predictions.

Training stages log with Lightning's CSVLogger: a `metrics.csv` with a `step` column (and
`epoch`) plus one column per logged key, sparse (a key is empty on rows where it was not logged).
`write_report` reads those files, draws the curves and the AP chart, and writes `report.md` next
to the PNGs it links, every file atomically.
"""

from __future__ import annotations

import csv
import math
import shutil
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from matplotlib.figure import Figure

from castseg.io import atomic_write
from castseg.training.stage_table import REFINE, STAGES, SUPERVISED_BASELINE
from castseg.viz import save_figure

Metrics = dict[str, tuple[np.ndarray, np.ndarray]]

# Logged keys drawn by plot_losses and plot_monitors, with their axis titles.
LOSS_KEYS = {
    "train/loss": "J (total)",
    "train/l_sup": "L_sup",
    "train/l_semi": "L_semi",
    "train/l_pxl": "L_pxl",
}
MONITOR_KEYS = {"train/fnr": "false-negative rate", "train/margin": "margin"}
# The paper's Fig. 3 marks FNR = 0.5 (a sampled negative as likely to be wrong as right).
FNR_REFERENCE = 0.5
# What each results-table row is, for the report's opening sentences (from the stage table).
ROW_DESCRIPTIONS = {stage.row: stage.description for stage in STAGES if stage.row is not None}
# The rows the student's gain compares: CAST's final student against the supervised baseline.
CAST_STUDENT, SUPERVISED_STUDENT = REFINE.row, SUPERVISED_BASELINE.row
_INDEX_COLUMNS = ("step", "epoch")
# ap.png: characters per line of a model name under its bars (1.6 inch per model at 8 pt).
_TICK_CHARACTERS = 16
# Curves are drawn raw (faint) and as a running mean over about this fraction of the points.
_SMOOTHING_FRACTION = 0.02


@dataclass
class ModelRow:
    """One evaluated model. ap, ap50 and per_class are mask AP in percent (NaN: undefined)."""

    name: str
    parameters: int
    ap: float
    ap50: float
    wall_s: float
    per_class: dict[str, float]


@dataclass
class PseudoLabelRow:
    """The pseudo-labels one teacher gave D_u: images, instances per image (and the labeled
    set's), and their mask AP / AP50 in percent against D_u's ground truth (NaN without one)."""

    teacher: str
    images: int
    per_image: float
    labeled_per_image: float
    ap: float
    ap50: float

    def to_json(self) -> dict[str, Any]:
        return {
            k: None if isinstance(v, float) and math.isnan(v) else v for k, v in vars(self).items()
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PseudoLabelRow:
        numbers = {
            k: math.nan if data[k] is None else float(data[k])
            for k in ("per_image", "labeled_per_image", "ap", "ap50")
        }
        return cls(str(data["teacher"]), int(data["images"]), **numbers)


def read_metrics_csv(path: str | Path) -> Metrics:
    """Logged key → (steps [T] int64, values [T] float64) of a CSVLogger `metrics.csv`.

    Empty cells are skipped, so each key holds only the rows where it was logged, in file order.
    The index columns `step` and `epoch` are not returned as keys. Raises FileNotFoundError for
    a missing file and ValueError, naming the file and line, for a file without a `step` column,
    a row with the wrong number of cells, or a cell that is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file not found: {path}")
    columns: dict[str, tuple[list[int], list[float]]] = {}
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or "step" not in header:
            raise ValueError(f"{path}: no 'step' column in the header (got {header})")
        step_at = header.index("step")
        keys = [(i, name) for i, name in enumerate(header) if name not in _INDEX_COLUMNS]
        for name in (name for _, name in keys):
            columns[name] = ([], [])
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{path}, line {line}: expected {len(header)} cells, got {len(row)}"
                )
            cells = [(name, row[i].strip()) for i, name in keys if row[i].strip()]
            if not cells:
                continue
            step = _parse(row[step_at].strip(), path, line, "step")
            if not step.is_integer():
                raise ValueError(f"{path}, line {line}: step must be an integer, got {step}")
            for name, cell in cells:
                columns[name][0].append(int(step))
                columns[name][1].append(_parse(cell, path, line, name))
    return {
        name: (np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64))
        for name, (steps, values) in columns.items()
        if steps
    }


def plot_losses(stage_logs: Mapping[str, str | Path], path: str | Path) -> list[str]:
    """One subplot per loss key logged by any stage, one curve per stage, saved as a PNG.

    stage_logs maps a stage name to its `metrics.csv` (or the folder holding it). Returns the
    keys drawn; when no stage logged a loss nothing is written and the list is empty.
    """
    return _plot_keys(_read_stages(stage_logs), LOSS_KEYS, path, "Training losses")


def plot_monitors(stage_logs: Mapping[str, str | Path], path: str | Path) -> list[str]:
    """The contrastive sampler's false-negative rate (with the 0.5 reference line of the
    paper's Fig. 3) and the margin, per stage over steps, saved as a PNG.

    Returns the keys drawn; when no stage logged either, nothing is written.
    """
    return _plot_keys(_read_stages(stage_logs), MONITOR_KEYS, path, "Contrastive-sampling monitors")


def plot_ap(rows: Sequence[ModelRow], path: str | Path) -> Path:
    """Grouped bars of maskAP and AP50 per model (`ap_figure`), saved as a PNG."""
    if not rows:
        raise ValueError(f"plot_ap({path}): rows is empty, no model to draw")
    return save_figure(ap_figure(rows), path)


def ap_figure(rows: Sequence[ModelRow]) -> Figure:
    """Grouped bars of maskAP and AP50 per model, the model names wrapped under them."""
    x = np.arange(len(rows))
    width = 0.38
    fig = Figure(figsize=(max(4.0, 1.6 * len(rows) + 1.5), 3.9), layout="constrained")
    ax = fig.subplots()
    for offset, label, values in (
        (-width / 2, "maskAP", [r.ap for r in rows]),
        (width / 2, "AP50", [r.ap50 for r in rows]),
    ):
        bars = ax.bar(x + offset, np.nan_to_num(values, nan=0.0), width, label=label)
        ax.bar_label(bars, labels=[_number(v, 1) for v in values], fontsize=8, padding=2)
    # Names wrapped to the width of their pair of bars, so neighbouring ticks never collide.
    ax.set_xticks(x, [textwrap.fill(r.name, _TICK_CHARACTERS) for r in rows], fontsize=8)
    ax.set_ylabel("AP (%)")
    top = max([v for r in rows for v in (r.ap, r.ap50) if not math.isnan(v)], default=0.0)
    ax.set_ylim(0, max(10.0, top * 1.3))  # headroom for the value labels and the legend
    ax.legend(loc="upper center", ncols=2, frameon=False)
    ax.set_title("Mask AP per model")
    ax.grid(axis="y", alpha=0.3)
    return fig


def format_table(rows: Sequence[ModelRow]) -> str:
    """A Markdown table: model | params (M) | maskAP | AP50 | wall time (s)."""
    header = ("model", "params (M)", "maskAP", "AP50", "wall time (s)")
    lines = [_markdown_row(header), _markdown_row(["---"] + ["---:"] * (len(header) - 1))]
    lines += [_markdown_row(_cells(r)) for r in rows]
    return "\n".join(lines)


def format_console_table(rows: Sequence[ModelRow]) -> str:
    """The same table as plain text with aligned columns, for the terminal."""
    header = ("model", "params (M)", "maskAP", "AP50", "wall time (s)")
    table = [header, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(w) for cell, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(cells) for cells in table[1:])])


_PSEUDO_LABEL_HEADER = (
    "pseudo-labels of",
    "images",
    "instances / image",
    "labeled instances / image",
    "maskAP vs D_u truth",
    "AP50",
)


def _pseudo_label_cells(row: PseudoLabelRow) -> tuple[str, ...]:
    return (
        row.teacher,
        str(row.images),
        _number(row.per_image, 2),
        _number(row.labeled_per_image, 2),
        _number(row.ap, 1),
        _number(row.ap50, 1),
    )


def format_pseudo_label_table(rows: Sequence[PseudoLabelRow]) -> str:
    """A Markdown table of the pseudo-labels each teacher gave D_u (`PseudoLabelRow`)."""
    lines = [
        _markdown_row(_PSEUDO_LABEL_HEADER),
        _markdown_row(["---"] + ["---:"] * (len(_PSEUDO_LABEL_HEADER) - 1)),
    ]
    lines += [_markdown_row(_pseudo_label_cells(r)) for r in rows]
    return "\n".join(lines)


def format_pseudo_label_console(rows: Sequence[PseudoLabelRow]) -> str:
    """The same table as plain text with aligned columns, for the terminal."""
    table = [_PSEUDO_LABEL_HEADER, *(_pseudo_label_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_PSEUDO_LABEL_HEADER))]
    lines = [
        "  ".join(
            [
                cells[0].ljust(widths[0]),
                *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)),
            ]
        )
        for cells in table
    ]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def format_per_class_table(rows: Sequence[ModelRow]) -> str:
    """A Markdown table of AP per class: one row per class, one column per model."""
    classes = list(dict.fromkeys(name for r in rows for name in r.per_class))
    lines = [
        _markdown_row(["class", *(r.name for r in rows)]),
        _markdown_row(["---"] + ["---:"] * len(rows)),
    ]
    for name in classes:
        cells = [_number(r.per_class.get(name, math.nan), 1) for r in rows]
        lines.append(_markdown_row([name, *cells]))
    return "\n".join(lines)


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
                f"The CAST student scores {_number(cast.ap, 1)} maskAP, {gain:+.1f} over the "
                f"supervised-only student ({_number(supervised.ap, 1)}); AP50 {gain50:+.1f}."
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
            read_metrics_csv(_metrics_file(log))
        except (FileNotFoundError, ValueError) as err:
            notes.append(f"stage {stage!r} left out of the plots: {err}")
        else:
            readable[stage] = _metrics_file(log)

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


def _parse(cell: str, path: Path, line: int, column: str) -> float:
    try:
        return float(cell)
    except ValueError:
        raise ValueError(
            f"{path}, line {line}: column {column!r} holds {cell!r}, not a number"
        ) from None


def _metrics_file(log: str | Path) -> Path:
    """A stage log given as its folder means the metrics.csv inside it."""
    log = Path(log)
    return log / "metrics.csv" if log.is_dir() else log


def _read_stages(stage_logs: Mapping[str, str | Path]) -> dict[str, Metrics]:
    return {stage: read_metrics_csv(_metrics_file(log)) for stage, log in stage_logs.items()}


def _plot_keys(
    stages: Mapping[str, Metrics], titles: Mapping[str, str], path: str | Path, suptitle: str
) -> list[str]:
    """One subplot per key of `titles` that some stage logged; returns the keys drawn."""
    fig = curves_figure(stages, titles, suptitle)
    if fig is None:
        return []
    save_figure(fig, path)
    return [key for key in titles if any(key in metrics for metrics in stages.values())]


def curves_figure(
    stages: Mapping[str, Metrics], titles: Mapping[str, str], suptitle: str
) -> Figure | None:
    """One subplot per key of `titles` that some stage logged, one curve per stage, each axis
    labelled; None when no stage logged any of the keys."""
    keys = [key for key in titles if any(key in metrics for metrics in stages.values())]
    if not keys:
        return None
    fig = Figure(figsize=(4.2 * len(keys), 3.4), layout="constrained")
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    colours = {stage: f"C{i}" for i, stage in enumerate(stages)}
    for ax, key in zip(axes, keys, strict=True):
        for stage, metrics in stages.items():
            if key not in metrics:
                continue
            steps, values = metrics[key]
            ax.plot(steps, values, color=colours[stage], alpha=0.25, linewidth=0.8)
            ax.plot(steps, _running_mean(values), color=colours[stage], label=stage)
        if key == "train/fnr":
            ax.axhline(
                FNR_REFERENCE,
                color="black",
                linestyle="--",
                linewidth=1,
                label=f"{FNR_REFERENCE:g}: a negative as likely wrong as right",
            )
        ax.set_title(titles[key])
        ax.set_xlabel("step (within stage)")
        ax.set_ylabel(titles[key])
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle(suptitle)
    return fig


def _running_mean(values: np.ndarray) -> np.ndarray:
    """Mean over a centred window of about _SMOOTHING_FRACTION of the points (odd, ≥ 1)."""
    window = max(1, int(len(values) * _SMOOTHING_FRACTION)) | 1
    if window == 1:
        return values
    padded = np.pad(values, window // 2, mode="edge")
    return np.convolve(padded, np.ones(window) / window, mode="valid")


def _number(value: float, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _cells(row: ModelRow) -> tuple[str, ...]:
    return (
        row.name,
        f"{row.parameters / 1e6:.2f}",
        _number(row.ap, 1),
        _number(row.ap50, 1),
        _number(row.wall_s, 1),
    )


def _markdown_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


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
