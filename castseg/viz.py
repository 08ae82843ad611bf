"""Pictures of instance masks: coloured overlays and a ground-truth | prediction grid.

Figures are built with matplotlib's object-oriented API (`Figure`, no pyplot), so nothing here
selects a GUI backend or keeps figures alive; PNGs are rendered by Agg. Every file is written
through `castseg.io.atomic_write`, so an interrupted run never leaves a half-written image behind.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from castseg.io import atomic_write

# Successive instances step the hue by the golden ratio, so neighbours in the list never share
# a colour and the palette never repeats exactly.
_GOLDEN_RATIO = 0.618033988749895
_SATURATION = 0.75
_VALUE = 0.95
# Grid panels smaller than this (short side, pixels) are upsampled by an integer factor with
# nearest-neighbour before drawing, so outlines and labels stay legible in the PNG.
_GRID_MIN_SIDE = 384
# Smallest label font (pixels); labels scale with the image's short side / 32 above it.
_MIN_FONT = 8


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Render `fig` as a PNG at `path`, atomically."""
    path = Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return path


def instance_colour(index: int) -> tuple[int, int, int]:
    """The RGB colour (0-255) of instance `index` of an overlay."""
    r, g, b = colorsys.hsv_to_rgb((index * _GOLDEN_RATIO) % 1.0, _SATURATION, _VALUE)
    return round(r * 255), round(g * 255), round(b * 255)


def overlay_instances(
    image: torch.Tensor | np.ndarray,
    masks: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | Sequence[int],
    scores: torch.Tensor | np.ndarray | Sequence[float] | None,
    class_names: Sequence[str],
    *,
    score_threshold: float = 0.0,
    alpha: float = 0.5,
    outline: bool = True,
    show_labels: bool = True,
) -> np.ndarray:
    """Draw instances over an image: a translucent fill, an outline and a "name 0.87" label.

    Args:
        image: [3, H, W] float tensor in [0, 1], or an [H, W, 3] array (uint8, or float in [0, 1]).
        masks: [N, H, W] bool. labels: [N] class indices into class_names. scores: [N] or None.
        score_threshold: instances with a score below it are not drawn (ignored without scores).
        alpha: opacity of the fill; outside the masks no pixel changes except under labels.
        outline: draw each mask's inner border in its colour at full opacity.
        show_labels: draw the class name (and score) in a box at the mask's top-left corner,
            best scores first; a label wider than half the image or over another label
            is left out, so labels never bury a small image.

    Returns:
        [H, W, 3] uint8. Instance i (its index in masks) gets `instance_colour(i)`; with
        scores, higher-scoring instances are drawn last, so they stay on top.
    """
    canvas = _image_to_uint8(image)
    height, width = canvas.shape[:2]
    masks_np = _numpy(masks).astype(bool)
    labels_np = _numpy(labels).astype(np.int64).reshape(-1)
    scores_np = None if scores is None else _numpy(scores).astype(np.float64).reshape(-1)
    if masks_np.ndim != 3 or masks_np.shape[1:] != (height, width):
        raise ValueError(
            f"masks must be [N, H, W] with H, W = {height}, {width} of the image, "
            f"got shape {masks_np.shape}"
        )
    n = masks_np.shape[0]
    if labels_np.shape != (n,) or (scores_np is not None and scores_np.shape != (n,)):
        raise ValueError(
            f"expected labels [N] and scores [N] with N = {n} masks, got labels "
            f"{labels_np.shape} and scores {None if scores_np is None else scores_np.shape}"
        )
    bad = labels_np[(labels_np < 0) | (labels_np >= len(class_names))]
    if bad.size:
        raise ValueError(
            f"labels {sorted(set(bad.tolist()))} are outside the {len(class_names)} class_names"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")

    order = np.arange(n)
    if scores_np is not None:
        order = order[scores_np >= score_threshold]
        order = order[np.argsort(scores_np[order], kind="stable")]

    out = canvas.astype(np.float64)
    colours = {k: np.array(instance_colour(int(k)), dtype=np.float64) for k in order}
    for k in order:
        mask, colour = masks_np[k], colours[k]
        out[mask] = (1.0 - alpha) * out[mask] + alpha * colour
        if outline:
            out[_inner_border(mask, _line_width(height, width))] = colour
    result = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if not show_labels or len(order) == 0:
        return result

    picture = Image.fromarray(result)
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(_MIN_FONT, min(height, width) // 32))
    drawn: list[tuple[int, int, int, int]] = []
    for k in order[::-1]:  # the best-scoring instances get their labels first
        ys, xs = np.nonzero(masks_np[k])
        if ys.size == 0:
            continue
        text = class_names[labels_np[k]]
        if scores_np is not None:
            text = f"{text} {scores_np[k]:.2f}"
        box = _label_box(draw, font, text, (int(xs.min()), int(ys.min())), (width, height))
        # A label wider than half the image, or over another label, would hide the picture
        # (small images, crowded corners): the instance keeps its colour only.
        if box[2] - box[0] > width / 2 or any(_overlap(box, other) for other in drawn):
            continue
        _draw_label(draw, font, text, box, colours[k])
        drawn.append(box)
    return np.asarray(picture)


def save_prediction_grid(
    path: str | Path,
    rows: Sequence[tuple[Any, Mapping[str, Any], Mapping[str, Any]]],
    class_names: Sequence[str],
    *,
    score_threshold: float = 0.5,
    title: str | None = None,
) -> Path:
    """A PNG with one row per image: ground truth | prediction, written atomically.

    Args:
        rows: (image, gt, pred) per image; image as in `overlay_instances`; gt and pred are
            dicts with "masks" [N, H, W], "labels" [N] and optionally "scores" [N].
        score_threshold: predictions scoring below it are hidden (ground truth is always shown).
    """
    if not rows:
        raise ValueError(f"save_prediction_grid({path}): rows is empty, nothing to draw")
    panels = []
    for i, (image, gt, pred) in enumerate(rows):
        pair = []
        for name, target, threshold in (("gt", gt, 0.0), ("pred", pred, score_threshold)):
            missing = [key for key in ("masks", "labels") if key not in target]
            if missing:
                raise ValueError(f"row {i}: {name} dict is missing {missing}")
            picture, masks = _image_to_uint8(image), _numpy(target["masks"])
            if masks.ndim != 3 or masks.shape[1:] != picture.shape[:2]:
                raise ValueError(
                    f"row {i}: {name} masks must be [N, H, W] with H, W = "
                    f"{picture.shape[:2]} of the image, got shape {masks.shape}"
                )
            picture, masks = _upsampled(picture, masks)
            pair.append(
                overlay_instances(
                    picture,
                    masks,
                    target["labels"],
                    target.get("scores"),
                    class_names,
                    score_threshold=threshold,
                )
            )
        panels.append(pair)

    fig = Figure(figsize=(2 * 3.2, len(rows) * 3.2 + (0.4 if title else 0.0)))
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for r, pair in enumerate(panels):
        for c, panel in enumerate(pair):
            axes[r, c].imshow(panel, interpolation="nearest")
            axes[r, c].set_axis_off()
    axes[0, 0].set_title("ground truth")
    axes[0, 1].set_title(f"prediction (score ≥ {score_threshold:g})")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _image_to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 from a [3, H, W] tensor or an [H, W, 3] array."""
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"image tensor must be [3, H, W], got shape {tuple(image.shape)}")
        array = image.detach().float().cpu().permute(1, 2, 0).numpy()
    else:
        array = np.asarray(image)
        if array.ndim != 3 or array.shape[-1] != 3:
            raise ValueError(f"image array must be [H, W, 3], got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.copy()
    return np.clip(np.rint(array.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def _line_width(height: int, width: int) -> int:
    return max(1, min(height, width) // 200)


def _inner_border(mask: np.ndarray, width: int) -> np.ndarray:
    """[H, W] bool: mask pixels within `width` pixels (4-neighbourhood) of a non-mask pixel."""
    eroded = mask
    for _ in range(width):
        padded = np.pad(eroded, 1, constant_values=False)
        eroded = (
            eroded & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        )
    return mask & ~eroded


def _label_box(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    text: str,
    corner: tuple[int, int],
    size: tuple[int, int],
) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a label box just above the mask corner (inside if no room), within
    the image; x1, y1 exclusive."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    box_w, box_h = right - left + 2, bottom - top + 2
    x, y = corner
    y = y - box_h if y >= box_h else y
    x = max(0, min(x, size[0] - box_w))
    y = max(0, min(y, size[1] - box_h))
    return x, y, x + box_w, y + box_h


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _draw_label(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    text: str,
    box: tuple[int, int, int, int],
    colour: np.ndarray,
) -> None:
    """The text in `box` (from `_label_box`), on the instance colour."""
    left, top, _, _ = draw.textbbox((0, 0), text, font=font)
    x, y, x1, y1 = box
    fill = tuple(int(v) for v in colour)
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    draw.rectangle((x, y, x1 - 1, y1 - 1), fill=fill)
    draw.text((x + 1 - left, y + 1 - top), text, fill=ink, font=font)


def _upsampled(image: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image [H, W, 3] and masks [N, H, W] repeated by an integer factor up to _GRID_MIN_SIDE."""
    factor = max(1, -(-_GRID_MIN_SIDE // min(image.shape[:2])))
    if factor == 1:
        return image, masks
    image = image.repeat(factor, axis=0).repeat(factor, axis=1)
    return image, masks.repeat(factor, axis=1).repeat(factor, axis=2)
