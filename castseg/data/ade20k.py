"""The ADE20K instance-segmentation benchmark (100 thing classes) as COCO instance jsons.

Layout under ROOT (ADEChallengeData2016 with the instance annotations of the benchmark):

    ADEChallengeData2016/images/{training,validation}/*.jpg
    ADEChallengeData2016/annotations_instance/{training,validation}/<same name>.png

An annotations_instance PNG is RGB: R holds the instance-benchmark class (1..100, 0 = none) and
G the instance id (0 = no instance). Every non-zero instance id is one annotation; all its pixels
must carry one class. The output follows Mask2Former's `prepare_ade20k_ins_seg.py`: a class's
COCO category id is its SceneParsing-150 index counted from 0 (bed → 7), so ids and names match
the jsons that script writes. Unlike that script, image ids are integers (1, 2, ... in file-name
order, as castseg's id lists need) and file names are relative to ROOT.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from castseg.data.convert_common import (
    checked_png,
    convert_all_splits,
    image_size,
    mask_annotation,
    require_files,
    require_folder,
)
from castseg.progress_bar import progress_bar

# (name, SceneParsing-150 id) of instance-benchmark classes 1..100, in that order; from the
# benchmark's objectInfo / categoryMapping as Mask2Former ships them
# (datasets/ade20k_instance_imgCatIds.json and ade20k_instance_catid_mapping.txt).
INSTANCE_CLASSES: tuple[tuple[str, int], ...] = (
    ("bed", 8), ("windowpane", 9), ("cabinet", 11), ("person", 13), ("door", 15),
    ("table", 16), ("curtain", 19), ("chair", 20), ("car", 21), ("painting", 23),
    ("sofa", 24), ("shelf", 25), ("mirror", 28), ("armchair", 31), ("seat", 32),
    ("fence", 33), ("desk", 34), ("wardrobe", 36), ("lamp", 37), ("bathtub", 38),
    ("railing", 39), ("cushion", 40), ("box", 42), ("column", 43), ("signboard", 44),
    ("chest of drawers", 45), ("counter", 46), ("sink", 48), ("fireplace", 50),
    ("refrigerator", 51), ("stairs", 54), ("case", 56), ("pool table", 57), ("pillow", 58),
    ("screen door", 59), ("bookcase", 63), ("coffee table", 65), ("toilet", 66),
    ("flower", 67), ("book", 68), ("bench", 70), ("countertop", 71), ("stove", 72),
    ("palm", 73), ("kitchen island", 74), ("computer", 75), ("swivel chair", 76),
    ("boat", 77), ("arcade machine", 79), ("bus", 81), ("towel", 82), ("light", 83),
    ("truck", 84), ("chandelier", 86), ("awning", 87), ("streetlight", 88), ("booth", 89),
    ("television receiver", 90), ("airplane", 91), ("apparel", 93), ("pole", 94),
    ("bannister", 96), ("ottoman", 98), ("bottle", 99), ("van", 103), ("ship", 104),
    ("fountain", 105), ("washer", 108), ("plaything", 109), ("stool", 111), ("barrel", 112),
    ("basket", 113), ("bag", 116), ("minibike", 117), ("oven", 119), ("ball", 120),
    ("food", 121), ("step", 122), ("trade name", 124), ("microwave", 125), ("pot", 126),
    ("animal", 127), ("bicycle", 128), ("dishwasher", 130), ("screen", 131),
    ("sculpture", 133), ("hood", 134), ("sconce", 135), ("vase", 136),
    ("traffic light", 137), ("tray", 138), ("ashcan", 139), ("fan", 140), ("plate", 143),
    ("monitor", 144), ("bulletin board", 145), ("radiator", 147), ("glass", 148),
    ("clock", 149), ("flag", 150),
)  # fmt: skip
CATEGORIES: tuple[dict, ...] = tuple(
    {"id": sceneparse_id - 1, "name": name} for name, sceneparse_id in INSTANCE_CLASSES
)
SPLITS = {"train": "training", "val": "validation"}
OUTPUT_NAMES = {split: f"ade20k_instance_{split}.json" for split in SPLITS}

_BASE = "ADEChallengeData2016"


def find_pairs(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """(image, annotation PNG) pairs of a split sorted by name; errors name what is missing."""
    root = Path(root)
    folder = SPLITS[split]
    image_dir = require_folder(root, f"{_BASE}/images/{folder}", "the benchmark's jpg images")
    ann_dir = require_folder(
        root, f"{_BASE}/annotations_instance/{folder}", "the instance-benchmark RGB PNGs"
    )
    images = sorted(image_dir.glob("*.jpg"))
    if not images:
        raise FileNotFoundError(f"{root}: no files match {_BASE}/images/{folder}/*.jpg")
    pairs = [(image, ann_dir / f"{image.stem}.png") for image in images]
    require_files(
        [png for _, png in pairs],
        f"{_BASE}/annotations_instance/{folder} PNGs",
        "one <image name>.png per image",
    )
    return pairs


def convert_split(root: str | Path, split: str, *, progress: bool = True) -> dict:
    """COCO instances data (images, annotations, categories) of one split, one image at a time."""
    root = Path(root)
    pairs = find_pairs(root, split)
    images, annotations = [], []
    for image_id, (image_file, png_file) in enumerate(
        progress_bar(pairs, desc=f"ade20k {split}", unit="img", enabled=progress), start=1
    ):
        width, height = image_size(image_file)
        pixels = checked_png(png_file, ("RGB",), (width, height))
        images.append(
            {
                "id": image_id,
                "file_name": image_file.relative_to(root).as_posix(),
                "height": height,
                "width": width,
            }
        )
        # column-major, so that every instance mask below is too (see mask_annotation)
        classes, instances = pixels[..., 0], np.asfortranarray(pixels[..., 1])
        for instance in np.unique(instances):
            if instance == 0:
                continue
            mask = instances == instance
            annotations.append(
                mask_annotation(
                    mask,
                    annotation_id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=_category_id(np.unique(classes[mask]), png_file, int(instance)),
                    iscrowd=False,
                )
            )
    return {"images": images, "annotations": annotations, "categories": list(CATEGORIES)}


def convert_ade20k(
    root: str | Path, out_dir: str | Path, *, progress: bool = True
) -> dict[str, Path]:
    """Write out_dir/ade20k_instance_train.json and _val.json; returns split → path.

    Both splits are checked for layout before the first image is converted, and nothing is
    written unless both convert.
    """
    return convert_all_splits(
        root,
        out_dir,
        OUTPUT_NAMES,
        check_layout=find_pairs,
        convert_split=convert_split,
        progress=progress,
    )


def _category_id(classes: np.ndarray, png_file: Path, instance: int) -> int:
    """COCO category id of an instance whose pixels carry the R values `classes`."""
    if len(classes) != 1:
        raise ValueError(
            f"{png_file}: instance {instance} (G channel) spans several classes (R channel) "
            f"{classes.tolist()}; an instance must have one class"
        )
    benchmark_class = int(classes[0])
    if not 1 <= benchmark_class <= len(INSTANCE_CLASSES):
        raise ValueError(
            f"{png_file}: instance {instance} has class {benchmark_class} in the R channel, "
            f"expected 1..{len(INSTANCE_CLASSES)}"
        )
    return CATEGORIES[benchmark_class - 1]["id"]
