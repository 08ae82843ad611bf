"""The pseudo-label cache: what it stores, reuse, resume after an interruption, clear errors.

The teacher is a stub whose predictions are known: query c's mask is colour channel c of the
image, and its class logits give query 0 class 0 (score ≈ 1), query 1 a uniform distribution
(score 0.25, below the 0.3 threshold) and query 2 class 2 (score ≈ 0.71).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torch import Tensor, nn

from castseg.data.coco import UnlabeledImageDataset
from castseg.data.validation import BadRecordWarning
from castseg.interruption import Interrupted, sigint_interrupts
from castseg.pipeline.pseudo_labels import (
    PseudoLabelCache,
    PseudoLabeledDataset,
    generate_pseudo_labels,
    partial_path,
)
from castseg.structures import Predictions

SIZE = (56, 56)
CLASS_LOGITS = torch.tensor(
    [[10.0, -10.0, -10.0, -10.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]]
)  # [3 queries, C+1 = 4]
BLUE_SCORE = math.exp(2) / (math.exp(2) + 3)  # softmax of query 2 at class 2
# Per image (ids 0, 1, 2 by file name): rectangles (channel, top, bottom, left, right).
SCENES = [
    [(0, 4, 20, 6, 30), (1, 30, 50, 10, 40), (2, 8, 24, 36, 52)],
    [(1, 10, 40, 10, 40)],
    [(2, 30, 52, 30, 54), (0, 2, 14, 2, 50)],
]
FINGERPRINT = {"teacher": "stub-v1", "split": "unlabeled"}


class ColourTeacher(nn.Module):
    """Query c's mask is colour channel c (logit ±10); class logits are CLASS_LOGITS.

    `seen` counts the images it was given; it raises once `fail_after` images were seen.
    """

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.seen = 0
        self.fail_after = fail_after

    def forward(self, images: Tensor) -> Predictions:
        if self.fail_after is not None and self.seen >= self.fail_after:
            raise RuntimeError("teacher interrupted")
        self.seen += images.shape[0]
        mask_logits = torch.where(images > 0.5, 10.0, -10.0)  # [B, 3, H, W]
        return Predictions(mask_logits, CLASS_LOGITS.expand(images.shape[0], -1, -1))


def rect_mask(top: int, bottom: int, left: int, right: int) -> Tensor:
    mask = torch.zeros(SIZE, dtype=torch.bool)
    mask[top:bottom, left:right] = True
    return mask


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("unlabeled")
    for index, rects in enumerate(SCENES):
        pixels = np.zeros((*SIZE, 3), dtype=np.uint8)
        for channel, top, bottom, left, right in rects:
            pixels[top:bottom, left:right, channel] = 255
        Image.fromarray(pixels).save(folder / f"image_{index}.png")
    return folder


def generate(teacher: nn.Module, folder: Path, path: Path, **overrides) -> PseudoLabelCache:
    kwargs = {"image_size": SIZE, "batch_size": 1, "fingerprint": FINGERPRINT, "progress": False}
    return generate_pseudo_labels(
        teacher, UnlabeledImageDataset(folder), path, **kwargs | overrides
    )


def test_generation_stores_the_filtered_instances(image_folder: Path, tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    cache = generate(ColourTeacher(), image_folder, path, batch_size=2)

    assert cache.image_ids == [0, 1, 2]
    assert not partial_path(path).exists()
    header = json.loads(path.read_text().splitlines()[0])
    assert header["format"] == "castseg-pseudo-labels-v1"
    assert header["fingerprint"] == FINGERPRINT
    assert header["num_classes"] == 3

    first = cache.instances(0)  # red kept, green below the threshold, blue kept
    assert first.labels.tolist() == [0, 2]
    assert torch.equal(first.masks[0], rect_mask(4, 20, 6, 30))
    assert torch.equal(first.masks[1], rect_mask(8, 24, 36, 52))
    mask_prob = torch.sigmoid(torch.tensor(10.0)).item()
    torch.testing.assert_close(
        first.scores, torch.tensor([mask_prob, BLUE_SCORE * mask_prob]), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        first.class_probs, CLASS_LOGITS[[0, 2]].softmax(-1), atol=1e-5, rtol=0
    )

    second = cache.instances(1)  # only the green rectangle, which is filtered out
    assert len(second) == 0 and second.image_size == SIZE
    assert second.class_probs.shape == (0, 4)
    assert cache.instances(2).labels.tolist() == [0, 2]

    summary = cache.summary()
    assert summary["images"] == 3 and summary["instances"] == 4
    assert summary["mean_score"] == pytest.approx((1 + BLUE_SCORE) / 2, abs=1e-4)


def test_a_complete_cache_is_reused_without_the_teacher(image_folder: Path, tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    generate(ColourTeacher(), image_folder, path)
    teacher = ColourTeacher()
    cache = generate(teacher, image_folder, path, fingerprint=dict(reversed(FINGERPRINT.items())))
    assert teacher.seen == 0
    assert cache.image_ids == [0, 1, 2]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"fingerprint": {**FINGERPRINT, "teacher": "other"}}, "fingerprint.teacher"),
        ({"threshold": 0.5}, "settings.threshold"),
    ],
)
def test_another_fingerprint_or_setting_is_an_error(
    image_folder: Path, tmp_path: Path, overrides: dict, key: str
) -> None:
    path = tmp_path / "labels.jsonl"
    generate(ColourTeacher(), image_folder, path)
    teacher = ColourTeacher()
    with pytest.raises(ValueError, match=rf"labels\.jsonl.*{key} differ"):
        generate(teacher, image_folder, path, **overrides)
    assert teacher.seen == 0


def partial_header(num_classes: int = 3, fingerprint: dict = FINGERPRINT) -> str:
    """The header line generation writes with the default settings."""
    header = {
        "format": "castseg-pseudo-labels-v1",
        "fingerprint": fingerprint,
        "settings": {
            "image_size": list(SIZE),
            "threshold": 0.3,
            "nms_iou": 0.5,
            "top_k": 100,
            "selection": "per_query",
        },
        "num_classes": num_classes,
    }
    return json.dumps(header)


def marker_record(image_id: int, label: int = 1) -> str:
    """A record the stub teacher would never produce (one full-image instance of `label`)."""
    full = mask_utils.encode(np.ones((*SIZE, 1), dtype=np.uint8, order="F"))[0]
    marker = {
        "rle": {"size": list(SIZE), "counts": full["counts"].decode()},
        "label": label,
        "score": 0.5,
        "class_probs": [0.1, 0.5, 0.2, 0.2],
    }
    return json.dumps(
        {"image_id": image_id, "height": SIZE[0], "width": SIZE[1], "instances": [marker]}
    )


def test_resume_skips_written_images_and_drops_a_truncated_line(
    image_folder: Path, tmp_path: Path
) -> None:
    path = tmp_path / "labels.jsonl"
    lines = [partial_header(), marker_record(1), '{"image_id": 2, "height": 5']
    partial_path(path).write_text("\n".join(lines))

    teacher = ColourTeacher()
    cache = generate(teacher, image_folder, path)
    assert teacher.seen == 2  # images 0 and 2
    assert sorted(cache.image_ids) == [0, 1, 2]
    assert cache.instances(1).labels.tolist() == [1]
    assert cache.instances(1).masks.all()
    assert cache.instances(2).labels.tolist() == [0, 2]
    assert not partial_path(path).exists()


def test_resume_merges_the_partial_files_of_every_rank(image_folder: Path, tmp_path: Path) -> None:
    """Partial files of an interrupted 3-rank run resume in one process; the merge keeps them."""
    path = tmp_path / "labels.jsonl"
    partial_path(path, 1).write_text(partial_header() + "\n" + marker_record(1, label=2) + "\n")
    partial_path(path, 2).write_text(partial_header() + "\n" + '{"image_id": 0, "heig')
    teacher = ColourTeacher()
    cache = generate(teacher, image_folder, path)
    assert teacher.seen == 2  # images 0 and 2; image 1 came from rank 1's file
    assert cache.image_ids == [0, 1, 2]  # dataset order
    assert cache.instances(1).labels.tolist() == [2] and cache.instances(1).masks.all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.jsonl"]
    fresh = generate(ColourTeacher(), image_folder, tmp_path / "fresh" / "labels.jsonl")
    lines, fresh_lines = path.read_text().splitlines(), fresh.path.read_text().splitlines()
    assert lines[0] == fresh_lines[0] and lines[1] == fresh_lines[1] and lines[3] == fresh_lines[3]


@pytest.mark.parametrize(
    ("rank1_lines", "message"),
    [
        (
            [partial_header(), marker_record(0)],
            r"labels\.jsonl\.rank1\.partial and .*labels\.jsonl\.partial both hold image id 0",
        ),
        ([partial_header(num_classes=4)], r"rank1\.partial holds 4 classes but .*partial holds 3"),
        (
            [partial_header(fingerprint={"teacher": "other"})],
            r"labels\.jsonl\.rank1\.partial was made for another teacher.*fingerprint\.split",
        ),
    ],
)
def test_partial_files_that_disagree_are_refused(
    image_folder: Path, tmp_path: Path, rank1_lines: list[str], message: str
) -> None:
    path = tmp_path / "labels.jsonl"
    partial_path(path).write_text(partial_header() + "\n" + marker_record(0) + "\n")
    partial_path(path, 1).write_text("\n".join(rank1_lines) + "\n")
    teacher = ColourTeacher()
    with pytest.raises(ValueError, match=message):
        generate(teacher, image_folder, path)
    assert teacher.seen == 0


def test_a_failure_leaves_only_the_partial_file_which_resumes(
    image_folder: Path, tmp_path: Path
) -> None:
    path = tmp_path / "labels.jsonl"
    with pytest.raises(RuntimeError, match="teacher interrupted"):
        generate(ColourTeacher(fail_after=1), image_folder, path)
    assert not path.exists()
    assert len(partial_path(path).read_text().splitlines()) == 2  # header + image 0

    teacher = ColourTeacher()
    resumed = generate(teacher, image_folder, path)
    assert teacher.seen == 2
    fresh = generate(ColourTeacher(), image_folder, tmp_path / "fresh.jsonl")
    for image_id in fresh.image_ids:
        assert torch.equal(resumed.instances(image_id).masks, fresh.instances(image_id).masks)
        assert torch.equal(resumed.instances(image_id).labels, fresh.instances(image_id).labels)


def test_pseudo_labeled_dataset_gives_samples_with_cached_instances(
    image_folder: Path, tmp_path: Path
) -> None:
    subset = UnlabeledImageDataset(image_folder, image_ids=[0, 1])
    cache = generate_pseudo_labels(
        ColourTeacher(),
        subset,
        tmp_path / "l.jsonl",
        image_size=SIZE,
        fingerprint={},
        progress=False,
    )
    sample = PseudoLabeledDataset(subset, cache)[0]
    assert sample.image_id == 0 and sample.image.shape == (3, *SIZE)
    assert torch.equal(sample.instances.masks, cache.instances(0).masks)
    with pytest.raises(KeyError, match=r"image ids \[2\]"):
        PseudoLabeledDataset(UnlabeledImageDataset(image_folder), cache)
    with pytest.raises(KeyError, match="no image id 2"):
        cache.instances(2)


def test_an_image_that_fails_to_decode_under_skip_gets_an_empty_record(
    image_folder: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "images"
    shutil.copytree(image_folder, folder)
    data = bytearray((folder / "image_1.png").read_bytes())  # header and end marker intact
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(255 - b for b in data[middle : middle + 8])
    (folder / "image_1.png").write_bytes(bytes(data))
    dataset = UnlabeledImageDataset(folder, on_bad_record="skip")
    assert dataset.image_ids == [0, 1, 2]  # the cheap check at construction passes
    with pytest.warns(BadRecordWarning, match="image_1.png"):
        cache = generate_pseudo_labels(
            ColourTeacher(),
            dataset,
            tmp_path / "l.jsonl",
            image_size=SIZE,
            fingerprint={},
            progress=False,
        )
    assert cache.image_ids == [0, 1, 2]
    assert len(cache.instances(1)) == 0 and cache.instances(1).image_size == SIZE
    assert cache.instances(2).labels.tolist() == [0, 2]
    substitute = PseudoLabeledDataset(dataset, cache)[1]  # image 1 still fails: image 2 instead
    assert substitute.image_id == 2
    assert torch.equal(substitute.instances.masks, cache.instances(2).masks)


def test_loading_a_foreign_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text('{"hello": "world"}\n')
    with pytest.raises(ValueError, match=r"notes\.jsonl is not a castseg pseudo-label cache"):
        PseudoLabelCache.load(path)


class CtrlCTeacher(ColourTeacher):
    """A ColourTeacher whose user presses Ctrl-C (a real SIGINT) once it has seen `after` images."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def forward(self, images: Tensor) -> Predictions:
        if self.seen == self.after:
            os.kill(os.getpid(), signal.SIGINT)
        return super().forward(images)


def test_ctrl_c_names_the_image_and_the_rerun_says_where_it_resumes(
    image_folder: Path, tmp_path: Path, capsys
) -> None:
    path = tmp_path / "labels.jsonl"
    with sigint_interrupts(), pytest.raises(Interrupted) as interrupted:
        generate(CtrlCTeacher(after=1), image_folder, path)
    assert str(interrupted.value) == (
        f"interrupted during pseudo-labelling into {path} at image 1/3; "
        "rerun the same command to resume"
    )
    capsys.readouterr()
    cache = generate(ColourTeacher(), image_folder, path)
    assert f"resuming the pseudo-label cache {path} at image 1/3" in capsys.readouterr().out
    assert cache.image_ids == [0, 1, 2]
