"""Summaries over seeds: mean ± standard deviation of every results-table row.

`summarise` reads nothing but the seed runs' `results.json` rows (the loss plot reads their
stage logs). The spread is the sample
standard deviation (n − 1 in the denominator), undefined (NaN, shown as "n/a") for one seed; a
metric undefined in any seed (no validation set) is undefined in the summary. `write_summary`
writes `summary.md` (the table, every seed's values, the AP chart with error bars and the
training loss of each stage with a ± std band) and
`summary.json` (the same figures as data) atomically.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from castseg.io import atomic_write_json, atomic_write_text
from castseg.pipeline.results import RunResults
from castseg.report_figures import LOSS_KEYS
from castseg.result_tables import markdown_row
from castseg.training.metrics_log import METRICS_FILE, read_metrics_csv
from castseg.viz import save_figure

SUMMARY_FORMAT = "castseg-summary-v1"
METRICS = {"ap": "maskAP", "ap50": "AP50", "wall_s": "wall time (s)"}
LOSS_KEY = "train/loss"


@dataclass
class Spread:
    """One metric over seeds: mean, sample standard deviation and the value of each seed."""

    mean: float
    std: float
    values: dict[int, float]

    @classmethod
    def of(cls, values: dict[int, float]) -> Spread:
        numbers = list(values.values())
        if not numbers or any(math.isnan(v) for v in numbers):
            return cls(math.nan, math.nan, dict(values))
        std = statistics.stdev(numbers) if len(numbers) > 1 else math.nan
        return cls(statistics.fmean(numbers), std, dict(values))

    def text(self, digits: int = 1) -> str:
        """ "12.3 ± 0.4"; the mean alone for one seed; "n/a" when undefined."""
        if math.isnan(self.mean):
            return "n/a"
        if math.isnan(self.std):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"

    def to_json(self) -> dict[str, Any]:
        def number(v: float) -> float | None:
            return None if math.isnan(v) else v

        return {
            "mean": number(self.mean),
            "std": number(self.std),
            "per_seed": {str(seed): number(v) for seed, v in self.values.items()},
        }


@dataclass
class SummaryRow:
    """One model of the results table over seeds."""

    name: str
    parameters: int
    metrics: dict[str, Spread]  # keys of METRICS


def summarise(results: Sequence[RunResults]) -> list[SummaryRow]:
    """One row per model, in the first run's order, over the runs' seeds.

    ValueError naming the file when runs disagree on the models they evaluated or two runs
    share a seed.
    """
    if not results:
        raise ValueError("no seed run to summarise")
    seeds = [r.seed for r in results]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat among the runs summarised: {seeds}")
    names = [row.name for row in results[0].rows]
    for run in results[1:]:
        theirs = [row.name for row in run.rows]
        if theirs != names:
            raise ValueError(
                f"{run.path} holds the models {theirs}, but {results[0].path} holds {names}: "
                "the seed runs of one summary must evaluate the same models"
            )
    rows = []
    for i, name in enumerate(names):
        by_seed = {run.seed: run.rows[i] for run in results}
        metrics = {
            key: Spread.of({seed: float(getattr(row, key)) for seed, row in by_seed.items()})
            for key in METRICS
        }
        rows.append(SummaryRow(name, results[0].rows[i].parameters, metrics))
    return rows


def find_row(rows: Sequence[SummaryRow], name: str) -> SummaryRow | None:
    return next((row for row in rows if row.name == name), None)


def format_summary_table(rows: Sequence[SummaryRow]) -> str:
    """Markdown: model | params (M) | maskAP | AP50 | wall time (s), as mean ± std."""
    lines = [
        markdown_row(["model", "params (M)", *METRICS.values()]),
        markdown_row(["---"] + ["---:"] * (1 + len(METRICS))),
    ]
    for row in rows:
        cells = [row.metrics[key].text() for key in METRICS]
        lines.append(markdown_row([row.name, f"{row.parameters / 1e6:.2f}", *cells]))
    return "\n".join(lines)


def format_per_seed_table(rows: Sequence[SummaryRow]) -> str:
    """Markdown: model | metric | one column per seed."""
    seeds = list(rows[0].metrics["ap"].values) if rows else []
    lines = [
        markdown_row(["model", "metric", *(f"seed {s}" for s in seeds)]),
        markdown_row(["---", "---"] + ["---:"] * len(seeds)),
    ]
    for row in rows:
        for key, label in METRICS.items():
            values = row.metrics[key].values
            cells = ["n/a" if math.isnan(values[s]) else f"{values[s]:.1f}" for s in seeds]
            lines.append(markdown_row([row.name, label, *cells]))
    return "\n".join(lines)


def plot_ap_spread(rows: Sequence[SummaryRow], path: str | Path) -> Path:
    """Grouped bars of mean maskAP and AP50 per model with ± one standard deviation, saved."""
    if not rows:
        raise ValueError(f"plot_ap_spread({path}): rows is empty, no model to draw")
    return save_figure(ap_spread_figure(rows), path)


def ap_spread_figure(rows: Sequence[SummaryRow]) -> Figure:
    """The figure of `plot_ap_spread`: per model, a maskAP and an AP50 bar at the mean, with an
    error bar from mean − std to mean + std."""
    x = np.arange(len(rows))
    width = 0.38
    fig = Figure(figsize=(max(4.0, 1.4 * len(rows) + 1.5), 3.6), layout="constrained")
    ax = fig.subplots()
    for offset, key, label in ((-width / 2, "ap", "maskAP"), (width / 2, "ap50", "AP50")):
        means = np.array([row.metrics[key].mean for row in rows])
        stds = np.array([row.metrics[key].std for row in rows])
        bars = ax.bar(
            x + offset,
            np.nan_to_num(means, nan=0.0),
            width,
            yerr=np.nan_to_num(stds, nan=0.0),
            capsize=3,
            label=label,
        )
        labels = [row.metrics[key].text() for row in rows]
        ax.bar_label(bars, labels=labels, fontsize=7, padding=2)
    ax.set_xticks(x, [row.name for row in rows], rotation=15 if len(rows) > 3 else 0)
    ax.set_ylabel("AP (%), mean ± std over seeds")
    top = max(
        (
            row.metrics[key].mean + float(np.nan_to_num(row.metrics[key].std))
            for row in rows
            for key in ("ap", "ap50")
            if not math.isnan(row.metrics[key].mean)
        ),
        default=0.0,
    )
    ax.set_ylim(0, max(10.0, top * 1.3))
    ax.legend(loc="upper center", ncols=2, frameon=False)
    ax.set_title("Mask AP per model over seeds")
    ax.grid(axis="y", alpha=0.3)
    return fig


def curve_spread(
    curves: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps [T], mean [T], sample std [T]) of several (steps, values) curves over the steps
    that every curve logged; std is 0 for one curve."""
    common = sorted(set.intersection(*(set(steps.tolist()) for steps, _ in curves)))
    values = np.array(
        [[dict(zip(s.tolist(), v.tolist(), strict=True))[t] for t in common] for s, v in curves]
    ).reshape(len(curves), len(common))
    std = values.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(len(common))
    return np.asarray(common, dtype=np.int64), values.mean(axis=0), std


def plot_loss_spread(seed_dirs: Sequence[Path], path: str | Path, key: str = LOSS_KEY) -> list[str]:
    """One subplot per training stage that logged `key` in every seed run: the mean over the
    seeds against the step, with a ± one standard deviation band (steps logged by all seeds).
    Returns the stages drawn; nothing is written when there is none."""
    logs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    stages = sorted({p.parent.name for d in seed_dirs for p in d.glob(f"*/{METRICS_FILE}")})
    for stage in stages:
        curves = []
        for folder in seed_dirs:
            log = folder / stage / METRICS_FILE
            metrics = read_metrics_csv(log) if log.is_file() else {}
            if key in metrics:
                curves.append(metrics[key])
        if curves and len(curves) == len(seed_dirs):
            logs[stage] = curves
    if not logs:
        return []
    fig = Figure(figsize=(4.2 * len(logs), 3.4), layout="constrained")
    axes = fig.subplots(1, len(logs), squeeze=False)[0]
    for ax, (stage, curves) in zip(axes, logs.items(), strict=True):
        steps, mean, std = curve_spread(curves)
        ax.plot(steps, mean, label=f"mean of {len(curves)} seeds")
        ax.fill_between(steps, mean - std, mean + std, alpha=0.3, label="± std")
        ax.set_title(stage)
        ax.set_xlabel("step (within stage)")
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle(f"{LOSS_KEYS.get(key, key)} over seeds")
    save_figure(fig, path)
    return list(logs)


def write_summary(out_dir: str | Path, results: Sequence[RunResults], *, title: str) -> Path:
    """out_dir/summary.md, summary.json and summary_ap.png from the seed runs; returns the .md."""
    out_dir = Path(out_dir)
    rows = summarise(results)
    seeds = [run.seed for run in results]
    sources = [run.path.resolve().relative_to(out_dir.resolve()).as_posix() for run in results]
    atomic_write_json(
        out_dir / "summary.json",
        {
            "format": SUMMARY_FORMAT,
            "seeds": seeds,
            "std": "sample standard deviation (n - 1); null for one seed",
            "sources": sources,
            "rows": [
                {
                    "name": row.name,
                    "parameters": row.parameters,
                    **{key: row.metrics[key].to_json() for key in METRICS},
                }
                for row in rows
            ],
        },
    )
    plot_ap_spread(rows, out_dir / "summary_ap.png")
    drawn = plot_loss_spread([run.path.parent for run in results], out_dir / "summary_losses.png")
    sections = [
        f"# {title}",
        f"Mean ± sample standard deviation (n − 1) over seeds {', '.join(map(str, seeds))}, "
        f"computed from {', '.join(sources)}.",
        format_summary_table(rows),
        "![maskAP and AP50, mean ± std over seeds](summary_ap.png)",
        "![training loss J per stage, mean ± std over seeds](summary_losses.png)"
        if drawn
        else "No stage logged a training loss in every seed run.",
        "## Per seed",
        format_per_seed_table(rows),
    ]
    path = out_dir / "summary.md"
    atomic_write_text(path, "\n\n".join(sections) + "\n")
    return path
