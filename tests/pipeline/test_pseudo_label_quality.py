"""Pseudo-label quality: density against the labeled set, the stop and its override, mask AP
against D_u's ground truth, and the report's table and picture.

Caches are written from the synthetic world's ground truth (an "oracle" teacher), so the
expected AP is known without a model: 100 for the truth itself, 0 for the truth with every
class shifted by one.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from castseg.cli import main
from castseg.data.coco import CategoryMap, CocoInstanceDataset, UnlabeledImageDataset
from castseg.models.checkpoints import save_checkpoint
from castseg.models.student import build_student
from castseg.pipeline.pseudo_label_files import PSEUDO_LABEL_FORMAT, encode_record
from castseg.pipeline.pseudo_label_quality import (
    WeakPseudoLabelsError,
    assess_pseudo_labels,
    labeled_density,
    read_pseudo_label_rows,
    save_pseudo_label_samples,
)
from castseg.pipeline.pseudo_labels import PseudoLabelCache
from castseg.result_tables import PseudoLabelRow
from castseg.structures import Instances

NUM_CLASSES = 5


@pytest.fixture(scope="module")
def split(synthetic_world):
    """D_l: the first 4 target images; D_u: the other 12, whose json carries their truth."""
    json_path = synthetic_world["target_train"]
    ids = CocoInstanceDataset(json_path).image_ids
    labeled = CocoInstanceDataset(json_path, image_ids=ids[:4])
    return (
        labeled,
        UnlabeledImageDataset(json_path, ids[4:]),
        CocoInstanceDataset(json_path, image_ids=ids[4:]),
    )


def write_cache(path, truth: CocoInstanceDataset, *, shift: int = 0, copies: int = 1, keep=True):
    """A cache holding `truth`'s instances (`copies` times, classes shifted by `shift`)."""
    lines = [{"format": PSEUDO_LABEL_FORMAT, "fingerprint": {"teacher": "oracle"},
              "settings": {}, "num_classes": NUM_CLASSES}]  # fmt: skip
    for index in range(len(truth)):
        sample = truth[index]
        masks = sample.instances.masks.repeat(copies, 1, 1) if keep else sample.instances.masks[:0]
        labels = (sample.instances.labels.repeat(copies) + shift) % NUM_CLASSES
        labels = labels[: len(masks)]
        probs = torch.nn.functional.one_hot(labels, NUM_CLASSES + 1).float()
        lines.append(encode_record(sample, Instances(masks, labels, torch.ones(len(masks)), probs)))
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return PseudoLabelCache.load(path)


def assess(cache, split, allow=False):
    labeled, unlabeled, _ = split
    return assess_pseudo_labels(
        cache, unlabeled, labeled, teacher="oracle teacher", threshold=0.3, allow_weak=allow
    )


def test_labeled_density_counts_instances_per_image(split):
    labeled, _, _ = split
    count = sum(len(labeled[i].instances) for i in range(len(labeled)))
    assert labeled_density(labeled) == pytest.approx(count / len(labeled))


def test_ground_truth_pseudo_labels_score_100_and_wrong_classes_0(split, tmp_path, capsys):
    _, _, truth = split
    row = assess(write_cache(tmp_path / "pseudo_labels_good.jsonl", truth), split)
    assert row.ap == pytest.approx(100.0) and row.ap50 == pytest.approx(100.0)
    count = sum(len(truth[i].instances) for i in range(len(truth)))
    assert row.images == len(truth) and row.per_image == pytest.approx(count / len(truth))
    printed = capsys.readouterr().out
    assert "Pseudo-labels of the oracle teacher" in printed and "mask AP 100.0" in printed
    wrong = assess(write_cache(tmp_path / "pseudo_labels_wrong.jsonl", truth, shift=1), split)
    assert wrong.ap == pytest.approx(0.0)
    assert [r.teacher for r in read_pseudo_label_rows(tmp_path)] == ["oracle teacher"] * 2
    assert read_pseudo_label_rows(tmp_path)[0] == row


@pytest.mark.parametrize("kind", ["empty", "dense"])
def test_empty_or_far_off_pseudo_labels_stop_with_a_message(split, tmp_path, kind):
    _, _, truth = split
    options = {"keep": False} if kind == "empty" else {"copies": 20}
    cache = write_cache(tmp_path / "pseudo_labels_x.jsonl", truth, **options)
    with pytest.raises(WeakPseudoLabelsError) as err:
        assess(cache, split)
    message = str(err.value)
    assert message.startswith("the oracle teacher gave ")
    assert f"on {len(truth)} unlabeled images" in message
    for key in ("teacher.prompts", "loss.pseudo_label_threshold", "run.allow_weak_pseudo_labels"):
        assert key in message


def test_the_override_goes_on_with_a_warning(split, tmp_path, capsys):
    _, _, truth = split
    cache = write_cache(tmp_path / "pseudo_labels_x.jsonl", truth, keep=False)
    row = assess(cache, split, allow=True)
    assert row.per_image == 0.0 and row.ap == 0.0
    assert "Warning: the oracle teacher gave 0 pseudo-labels" in capsys.readouterr().out


def test_unlabeled_images_without_truth_get_no_ap(split, tmp_path, synthetic_world):
    labeled, _, truth = split
    # a folder of images carries no annotations
    folder_images = UnlabeledImageDataset(synthetic_world["target_train"].parent / "images")
    cache = write_cache(tmp_path / "pseudo_labels_x.jsonl", truth)
    row = assess_pseudo_labels(
        cache, folder_images, labeled, teacher="t", threshold=0.3, allow_weak=True
    )
    assert math.isnan(row.ap)
    assert save_pseudo_label_samples(tmp_path, folder_images, tmp_path / "p.png") is None


def test_the_picture_shows_pseudo_labelled_images(split, tmp_path):
    _, unlabeled, truth = split
    write_cache(tmp_path / "pseudo_labels_teacher_adapted.jsonl", truth)
    png = save_pseudo_label_samples(tmp_path, unlabeled, tmp_path / "pseudo_labels.png")
    assert png is not None and png.stat().st_size > 0


def test_row_json_round_trip_keeps_nan():
    row = PseudoLabelRow("t", 3, 1.5, 2.0, math.nan, math.nan)
    back = PseudoLabelRow.from_json(json.loads(json.dumps(row.to_json())))
    assert back.teacher == "t" and back.images == 3 and math.isnan(back.ap)


def test_castseg_run_stops_before_training_on_empty_pseudo_labels(
    tmp_path, synthetic_world, capsys
):
    categories = CategoryMap.from_coco(synthetic_world["target_train"])
    torch.manual_seed(0)
    teacher = save_checkpoint(
        tmp_path / "t.pt", build_student("tiny", len(categories)), category_map=categories,
        image_size=(56, 56),
    )  # fmt: skip
    config = {
        "data": {"labeled_annotations": str(synthetic_world["target_train"]), "split": 3,
                 "image_size": [56, 56], "num_workers": 0},
        "teacher": {"kind": "student_family", "checkpoint": str(teacher), "finetune_iters": 0},
        "student": {"size": "tiny"},
        # no instance of an untrained teacher scores above 0.99
        "loss": {"pseudo_label_threshold": 0.99},
        "run": {"out_dir": str(tmp_path / "run"), "accelerator": "cpu", "devices": 1},
    }  # fmt: skip
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("castseg run: error: the student_family teacher (teacher_finetune)")
    assert "gave 0 pseudo-labels on 13 unlabeled images" in error
    assert not (tmp_path / "run" / "teacher_selftrain").exists()
    assert not (tmp_path / "run" / "teacher_adapted.pt").exists()
