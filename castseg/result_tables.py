"""The rows of a CAST run's results tables and their Markdown and console forms.

`ModelRow` is one evaluated model (the results table, `results.json`, the run state);
`PseudoLabelRow` the pseudo-labels one teacher gave D_u. `markdown_row` is the one Markdown table
row of the report, the seed summaries and the ablation table.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


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


def format_table(rows: Sequence[ModelRow]) -> str:
    """A Markdown table: model | params (M) | maskAP | AP50 | wall time (s)."""
    header = ("model", "params (M)", "maskAP", "AP50", "wall time (s)")
    lines = [markdown_row(header), markdown_row(["---"] + ["---:"] * (len(header) - 1))]
    lines += [markdown_row(_cells(r)) for r in rows]
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
        format_number(row.per_image, 2),
        format_number(row.labeled_per_image, 2),
        format_number(row.ap, 1),
        format_number(row.ap50, 1),
    )


def format_pseudo_label_table(rows: Sequence[PseudoLabelRow]) -> str:
    """A Markdown table of the pseudo-labels each teacher gave D_u (`PseudoLabelRow`)."""
    lines = [
        markdown_row(_PSEUDO_LABEL_HEADER),
        markdown_row(["---"] + ["---:"] * (len(_PSEUDO_LABEL_HEADER) - 1)),
    ]
    lines += [markdown_row(_pseudo_label_cells(r)) for r in rows]
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
        markdown_row(["class", *(r.name for r in rows)]),
        markdown_row(["---"] + ["---:"] * len(rows)),
    ]
    for name in classes:
        cells = [format_number(r.per_class.get(name, math.nan), 1) for r in rows]
        lines.append(markdown_row([name, *cells]))
    return "\n".join(lines)


def _cells(row: ModelRow) -> tuple[str, ...]:
    return (
        row.name,
        f"{row.parameters / 1e6:.2f}",
        format_number(row.ap, 1),
        format_number(row.ap50, 1),
        format_number(row.wall_s, 1),
    )


def format_number(value: float, digits: int) -> str:
    """`value` with `digits` decimals; "n/a" when undefined (NaN)."""
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def markdown_row(cells: Iterable[str]) -> str:
    """A Markdown table row, pipes inside cells escaped."""
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
