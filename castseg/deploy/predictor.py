"""Batched prediction over image files: COCO results and overlay PNGs, PyTorch or ONNX Runtime.

Both backends go through the same post-processing as `castseg eval`
(`castseg.runtime.inference.predict_images`): the `ResizeView` of the model's input size,
Mask2Former instance inference, masks mapped back onto each original image.

An image file that cannot be read (corrupt, truncated, not an image) is skipped: a warning
names it, the run goes on, and `images.json` lists it under "skipped" with the reason. Only when
no image at all can be read does the run fail.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor, nn

from castseg.data.coco import CategoryMap
from castseg.data.images import load_rgb_image
from castseg.data.views import ResizeView
from castseg.deploy.devices import torch_device
from castseg.deploy.onnx_runtime import load_onnx_model
from castseg.evaluation.coco import encode_results
from castseg.io import atomic_write, atomic_write_json
from castseg.models.checkpoints import load_checkpoint
from castseg.progress_bar import progress_bar
from castseg.runtime.inference import predict_images
from castseg.viz import overlay_instances

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
IMAGES_FILE = "images.json"
OVERLAY_DIR = "overlays"


@dataclass(frozen=True)
class DeployedModel:
    """A model ready to predict.

    model: returns `Predictions` for images [B, 3, H, W] float RGB in [0, 1] with (H, W) =
    image_size. backend: "pytorch" or "onnxruntime". source: the file it was loaded from.
    """

    model: nn.Module
    category_map: CategoryMap
    image_size: tuple[int, int]
    backend: str
    source: Path


def load_deployed_model(
    *, checkpoint: str | Path | None = None, onnx: str | Path | None = None, device: str = "cpu"
) -> DeployedModel:
    """Load a castseg checkpoint (PyTorch) or a `castseg export` file (ONNX Runtime).

    Exactly one of `checkpoint` and `onnx` is given; device is "cpu" or "cuda".
    """
    if (checkpoint is None) == (onnx is None):
        raise ValueError("give either a checkpoint or an ONNX model, not both or neither")
    if onnx is not None:
        segmenter, metadata = load_onnx_model(onnx, device)
        return DeployedModel(
            segmenter, metadata.category_map, metadata.image_size, "onnxruntime", Path(onnx)
        )
    loaded = load_checkpoint(checkpoint, map_location=torch_device(device))
    return DeployedModel(
        loaded.model, loaded.category_map, loaded.image_size, "pytorch", Path(checkpoint)
    )


@dataclass
class PredictionSummary:
    """What a run wrote: COCO image records (with "file_name" and "overlay"), skipped files
    ({"id", "file_name", "error"}) and the number of instances in the results."""

    images: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    num_instances: int = 0


def predict_files(
    deployed: DeployedModel,
    paths: Sequence[Path],
    out_dir: str | Path,
    *,
    score_threshold: float = 0.5,
    top_k: int = 100,
    batch_size: int = 4,
    progress: bool = True,
) -> PredictionSummary:
    """Predict every image of `paths` and write, in `out_dir`:

    - results.json: COCO results records (image_id, category_id from the model's categories,
      RLE segmentation, score), instances scoring at least `score_threshold` (0 keeps all of
      the top_k, as mask AP needs);
    - images.json: {"images": [{"id", "file_name", "height", "width", "overlay"}],
      "categories": [{"id", "name"}], "skipped": [...], "info": {...}}; image ids are 1, 2, ...
      in the order of `paths`, skipped files included;
    - overlays/<stem>.png: each image with its instances drawn (colour, class name, score);
      `<stem>-<id>.png` where two inputs share a stem.

    Every file is written atomically; the two JSON files once all images are done.
    """
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"--score-threshold must be in [0, 1], got {score_threshold}")
    out_dir = Path(out_dir)
    view = ResizeView(deployed.image_size)
    names = overlay_names(paths)
    summary = PredictionSummary()
    results: list[dict[str, Any]] = []
    with progress_bar(total=len(paths), desc="predict", unit="img", enabled=progress) as bar:
        for start in range(0, len(paths), batch_size):
            ids = range(start + 1, min(start + batch_size, len(paths)) + 1)
            read = [(i, _read_or_skip(paths, i, summary)) for i in ids]
            batch = [(i, image) for i, image in read if image is not None]
            outputs = predict_images(
                deployed.model,
                [image for _, image in batch],
                view,
                top_k=top_k,
                score_threshold=score_threshold,
            )
            for (image_id, image), found in zip(batch, outputs, strict=True):
                results += encode_results(
                    image_id,
                    found["masks"],
                    found["labels"],
                    found["scores"],
                    deployed.category_map.to_coco,
                )
                overlay = Path(OVERLAY_DIR) / names[image_id - 1]
                _save_overlay(out_dir / overlay, image, found, deployed.category_map.names)
                summary.images.append(
                    {
                        "id": image_id,
                        "file_name": str(paths[image_id - 1]),
                        "height": int(image.shape[1]),
                        "width": int(image.shape[2]),
                        "overlay": overlay.as_posix(),
                    }
                )
            bar.update(len(ids))
    if not summary.images:
        reasons = "; ".join(skipped["error"] for skipped in summary.skipped[:3])
        raise ValueError(f"none of the {len(paths)} input images could be read: {reasons}")
    summary.num_instances = len(results)
    atomic_write_json(out_dir / RESULTS_FILE, results, indent=None)
    atomic_write_json(out_dir / IMAGES_FILE, _index(deployed, summary, score_threshold, top_k))
    return summary


def overlay_names(paths: Sequence[Path]) -> list[str]:
    """The overlay file name of each path: `<stem>.png`, or `<stem>-<id>.png` (id = position
    + 1) for every path whose stem another path shares (case-insensitively)."""
    stems = [path.stem for path in paths]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem.lower()] = counts.get(stem.lower(), 0) + 1
    return [
        f"{stem}-{i + 1}.png" if counts[stem.lower()] > 1 else f"{stem}.png"
        for i, stem in enumerate(stems)
    ]


def _read_or_skip(
    paths: Sequence[Path], image_id: int, summary: PredictionSummary
) -> Tensor | None:
    """Image `image_id` (1-based) as [3, H, W] in [0, 1], or None when it cannot be read (then
    recorded in `summary.skipped`)."""
    path = paths[image_id - 1]
    try:
        return load_rgb_image(path)
    except (ValueError, FileNotFoundError) as err:
        logger.warning("skipped: %s", err)
        summary.skipped.append({"id": image_id, "file_name": str(path), "error": str(err)})
        return None


def _index(
    deployed: DeployedModel, summary: PredictionSummary, score_threshold: float, top_k: int
) -> dict[str, Any]:
    """The content of images.json."""
    category_map = deployed.category_map
    return {
        "info": {
            "model": str(deployed.source),
            "backend": deployed.backend,
            "image_size": list(deployed.image_size),
            "score_threshold": score_threshold,
            "top_k": top_k,
        },
        "images": summary.images,
        "categories": [
            {"id": i, "name": n} for i, n in zip(category_map.ids, category_map.names, strict=True)
        ],
        "skipped": summary.skipped,
    }


def _save_overlay(
    path: Path, image: Tensor, found: dict[str, Tensor], class_names: Sequence[str]
) -> None:
    masks, labels, scores = found["masks"], found["labels"], found["scores"]
    picture = overlay_instances(image, masks, labels, scores, class_names)
    with atomic_write(path) as tmp:
        Image.fromarray(np.ascontiguousarray(picture)).save(tmp, format="PNG")
