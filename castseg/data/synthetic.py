"""The embedded synthetic world: procedural instance-segmentation scenes in three domains.

Every image holds 2–6 instances of five shape classes. Their radii are 10–22 px at 112 × 112 (the
visible part of most is 14–30 px on a side): one to two of a ViT's 14-px patches, so a student
whose features live on the patch grid can tell them apart. A class has its own shape, a typical
hue and a typical texture, so it can be learned from shape and appearance (the painting is in
`castseg.data.synthetic_style`). Instances are painted in order and later ones occlude earlier
ones; the annotation is the visible mask. Same-class instances are often placed next to each
other so that they touch or overlap. An instance left with fewer than 30 visible pixels (at
112 × 112) is not annotated.

The `target` domain differs from `source` in appearance only: palette (hue shift, lower
saturation), texture contrast and stripe frequency, blur and noise, and a darker, blotchy
background with distractor shapes that are not instances. Shapes, sizes and layouts are drawn from
the same distributions in both domains, and class hues stay recognisable, so a model trained on
`source` transfers only partially to `target`.

The `broad` domain stands in for the varied data a foundation model is pretrained on: each image
draws every appearance setting on its own, uniformly from its `source` value to 60 % of the way
to its `target` value (`synthetic_style.BROAD_REACH`), so broad images reach toward the target's
look without covering it.

`generate_world` writes each split as a COCO dataset: `<out>/<split>/images/*.png` and
`<out>/<split>/instances.json` (RLE masks), plus `<out>/world.json` recording the spec.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from numpy.random import Generator
from PIL import Image
from pycocotools import mask as mask_utils

from castseg.data.synthetic_style import (
    CLASS_NAMES,
    SHAPES,
    background,
    blur,
    domain_style,
    draw_distractor,
    instance_colour,
)

MIN_INSTANCES, MAX_INSTANCES = 2, 6
WORLD_FILE = "world.json"
GENERATOR_VERSION = 3
_REFERENCE_SIDE = 112  # sizes below are in pixels of a 112 × 112 image and scale with the image
_MIN_VISIBLE_AREA = 30
_SAME_CLASS_NEIGHBOUR_PROB = 0.4
_OBJECT_SCALE = 1.4  # radii are 7–16 px × this, in both domains


DEFAULT_COUNTS = {"source_train": 120, "source_val": 30, "target_train": 120, "target_val": 30}


@dataclass(frozen=True)
class WorldSpec:
    """What to generate. A split named `<domain>_<name>` is drawn from that domain's style
    (`source`, `target` or `broad`).

    image_size: (H, W). counts: images per split.
    """

    image_size: tuple[int, int] = (112, 112)
    seed: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_COUNTS))

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if len(self.image_size) != 2 or min(self.image_size) < 32:
            raise ValueError(f"image_size must be (H, W) with H, W >= 32, got {self.image_size}")
        for split, count in self.counts.items():
            if not re.fullmatch(r"(source|target|broad)_[a-z0-9_]+", split):
                raise ValueError(
                    f"split names must look like source_<name>, target_<name> or broad_<name> "
                    f"(lowercase, digits, _), got {split!r}"
                )
            if count < 0:
                raise ValueError(f"counts[{split!r}] must be >= 0, got {count}")


def generate_world(out_dir: str | Path, spec: WorldSpec | None = None) -> dict[str, Path]:
    """Write the world described by `spec` to `out_dir`; returns split → instances.json path.

    A folder that already holds a world of the same spec is reused as it is. The world is built in
    a temporary sibling folder and renamed into place, so an interrupted run leaves no partial
    world; an existing world of another spec is replaced, any other non-empty folder is an error.
    """
    spec = spec or WorldSpec()
    out_dir = Path(out_dir)
    manifest = _manifest(spec)
    if _holds_world(out_dir, manifest):
        return _annotation_files(out_dir, spec)
    not_a_world = out_dir.exists() and not (out_dir / WORLD_FILE).is_file()
    if not_a_world and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(
            f"{out_dir} is neither an empty folder nor a world ({WORLD_FILE} is missing); "
            "refusing to replace it"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)
        for split, count in spec.counts.items():
            _write_split(tmp / split, split, count, spec)
        (tmp / WORLD_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        if _holds_world(out_dir, manifest):  # another process finished the same world first
            shutil.rmtree(tmp)
        elif out_dir.exists():
            old = out_dir.with_name(tmp.name + ".old")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _annotation_files(out_dir, spec)


def render_scene(
    rng: Generator, image_size: tuple[int, int], domain: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one scene.

    Returns image [H, W, 3] uint8, visible masks [M, H, W] bool and labels [M] (indices into
    CLASS_NAMES), with MIN_INSTANCES <= M <= MAX_INSTANCES.
    """
    style = domain_style(rng, domain)
    height, width = image_size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    unit = min(height, width) / _REFERENCE_SIDE
    backdrop = background(rng, yy, xx, style)
    for _ in range(rng.integers(style.clutter[0], style.clutter[1] + 1)):
        draw_distractor(rng, backdrop, yy, xx, unit)
    min_area = _MIN_VISIBLE_AREA * height * width / _REFERENCE_SIDE**2
    while True:  # redraw the instances until enough of them stay visible
        canvas = backdrop.copy()
        owner = np.full((height, width), -1)
        labels = []
        placed: list[tuple[float, float, float]] = []
        for i in range(rng.integers(MIN_INSTANCES, MAX_INSTANCES + 1)):
            label, cy, cx, radius = _place(rng, labels, placed, height, width, unit * _OBJECT_SCALE)
            angle = rng.uniform(0, 2 * np.pi)
            dy, dx = yy - cy, xx - cx
            u = dx * np.cos(angle) + dy * np.sin(angle)
            v = -dx * np.sin(angle) + dy * np.cos(angle)
            mask, shade = SHAPES[label](rng, u, v, radius, style.stripe_period * unit)
            shade = 1.0 + style.texture_contrast * (shade - 1.0)
            canvas[mask] = instance_colour(rng, label, style) * shade[mask][:, None]
            owner[mask] = i
            labels.append(label)
            placed.append((cy, cx, radius))
        masks = owner[None] == np.arange(len(labels))[:, None, None]
        keep = masks.sum(axis=(1, 2)) >= min_area
        if keep.sum() >= MIN_INSTANCES:
            break
    canvas = blur(canvas, style.blur_passes)
    canvas += rng.normal(0.0, style.noise_std, canvas.shape)
    image = np.round(np.clip(canvas, 0.0, 1.0) * 255).astype(np.uint8)
    return image, masks[keep], np.asarray(labels)[keep]


def _place(
    rng: Generator,
    labels: list[int],
    placed: list[tuple[float, float, float]],
    height: int,
    width: int,
    unit: float,
) -> tuple[int, float, float, float]:
    """Class, centre (y, x) and radius of the next instance; often a same-class neighbour."""
    if placed and rng.random() < _SAME_CLASS_NEIGHBOUR_PROB:
        j = int(rng.integers(len(placed)))
        cy, cx, radius_j = placed[j]
        radius = radius_j * rng.uniform(0.85, 1.15)
        # distance below the sum of radii overlaps, near it the two shapes touch
        distance = (radius + radius_j) * rng.uniform(0.6, 1.05)
        direction = rng.uniform(0, 2 * np.pi)
        return (
            labels[j],
            cy + distance * np.sin(direction),
            cx + distance * np.cos(direction),
            radius,
        )
    radius = rng.uniform(7.0, 16.0) * unit
    label = int(rng.integers(len(CLASS_NAMES)))
    margin = 0.2 * radius
    return label, rng.uniform(margin, height - margin), rng.uniform(margin, width - margin), radius


def _write_split(split_dir: Path, split: str, count: int, spec: WorldSpec) -> None:
    domain = split.split("_", 1)[0]
    (split_dir / "images").mkdir(parents=True)
    images, annotations = [], []
    for index in range(count):
        # one generator per image: images do not depend on the counts of other splits
        rng = np.random.default_rng([spec.seed, zlib.crc32(split.encode()), index])
        image, masks, labels = render_scene(rng, spec.image_size, domain)
        image_id, file_name = index + 1, f"{index + 1:06d}.png"
        Image.fromarray(image).save(split_dir / "images" / file_name)
        images.append(
            dict(id=image_id, file_name=file_name, height=image.shape[0], width=image.shape[1])
        )
        for mask, label in zip(masks, labels, strict=True):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                    "area": int(mask.sum()),
                    "bbox": [float(b) for b in mask_utils.toBbox(rle)],
                    "iscrowd": 0,
                }
            )
    categories = [
        {"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASS_NAMES)
    ]
    coco = {
        "info": {"description": f"castseg synthetic world, split {split}", "domain": domain},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    (split_dir / "instances.json").write_text(json.dumps(coco))


def holds_world(out_dir: str | Path, spec: WorldSpec) -> bool:
    """Whether `out_dir` already holds the world of `spec` (which `generate_world` reuses)."""
    return _holds_world(Path(out_dir), _manifest(spec))


def _manifest(spec: WorldSpec) -> dict:
    # a JSON round trip turns tuples into lists, as they read back from disk
    return json.loads(
        json.dumps({"generator": __name__, "version": GENERATOR_VERSION, "spec": asdict(spec)})
    )


def _holds_world(out_dir: Path, manifest: dict) -> bool:
    try:
        found = json.loads((out_dir / WORLD_FILE).read_text())
    except (OSError, ValueError):
        return False
    return found == manifest and all(
        (out_dir / split / "instances.json").is_file() for split in manifest["spec"]["counts"]
    )


def _annotation_files(out_dir: Path, spec: WorldSpec) -> dict[str, Path]:
    return {split: out_dir / split / "instances.json" for split in spec.counts}
