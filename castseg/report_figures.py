"""The report's figures: training curves of the stage logs, and the AP chart of the models.

`plot_losses` and `plot_monitors` draw the keys the stages logged (`castseg.training.metrics_log`),
`plot_ap` the mask AP of the results-table rows; each writes a PNG atomically (`save_figure`).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from castseg.result_tables import ModelRow, format_number
from castseg.training.metrics_log import Metrics, metrics_file, read_metrics_csv
from castseg.viz import save_figure

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
# ap.png: characters per line of a model name under its bars (1.6 inch per model at 8 pt).
_TICK_CHARACTERS = 16
# Curves are drawn raw (faint) and as a running mean over about this fraction of the points.
_SMOOTHING_FRACTION = 0.02


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
        ax.bar_label(bars, labels=[format_number(v, 1) for v in values], fontsize=8, padding=2)
    # Names wrapped to the width of their pair of bars, so neighbouring ticks never collide.
    ax.set_xticks(x, [textwrap.fill(r.name, _TICK_CHARACTERS) for r in rows], fontsize=8)
    ax.set_ylabel("AP (%)")
    top = max([v for r in rows for v in (r.ap, r.ap50) if not math.isnan(v)], default=0.0)
    ax.set_ylim(0, max(10.0, top * 1.3))  # headroom for the value labels and the legend
    ax.legend(loc="upper center", ncols=2, frameon=False)
    ax.set_title("Mask AP per model")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _read_stages(stage_logs: Mapping[str, str | Path]) -> dict[str, Metrics]:
    return {stage: read_metrics_csv(metrics_file(log)) for stage, log in stage_logs.items()}


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
