"""Official Cityscapes instance AP on fixture files, next to COCO-style AP of the same results."""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path

import cityscapesscripts.evaluation
import numpy as np
import pytest
from cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling import args as official_args
from cityscapesscripts.evaluation.evalInstanceLevelSemanticLabeling import (
    assignGt2Preds,
    filterGtInstances,
    readPredInfo,
    setInstanceLabels,
)
from cityscapesscripts.evaluation.instances2dict import instances2dict
from PIL import Image

from castseg.data.cityscapes import THING_LABEL_IDS, convert_split, instance_files
from castseg.data.coco import CategoryMap
from castseg.evaluation.cityscapes import (
    evaluate_cityscapes,
    evaluate_cityscapes_results,
    match_frame,
    write_frame_results,
)
from castseg.evaluation.coco import encode_results, evaluate_coco

H, W = 40, 60
CAR, PERSON, TRUCK, BICYCLE = (THING_LABEL_IDS.index(i) for i in (26, 24, 27, 33))


def frame_a() -> np.ndarray:
    ids = np.full((H, W), 7, dtype=np.uint16)  # road
    ids[2:12, 2:27] = 26001  # car, 250 px
    ids[20:32, 5:17] = 24001  # person, 144 px
    ids[20:30, 40:55] = 26  # a car group (crowd)
    ids[35:40] = 0  # unlabeled: void in the evaluation
    return ids


def frame_b() -> np.ndarray:
    ids = np.full((H, W), 7, dtype=np.uint16)
    ids[5:17, 30:45] = 26002  # car, 180 px
    ids[25:35, 10:22] = 33001  # bicycle, 120 px
    return ids


def write_val(root: Path, frames: dict[str, np.ndarray]) -> Path:
    """gtFine/val instanceIds PNGs (16 bit) and leftImg8bit/val images under root."""
    for key, ids in frames.items():
        city = key.split("_")[0]
        gt = root / "gtFine" / "val" / city / f"{key}_gtFine_instanceIds.png"
        image = root / "leftImg8bit" / "val" / city / f"{key}_leftImg8bit.png"
        for path in (gt, image):
            path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ids).save(gt)
        Image.fromarray(np.zeros((H, W, 3), dtype=np.uint8)).save(image)
    return root


A, B = "frankfurt_000000_000001", "frankfurt_000000_000002"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_val(tmp_path / "cityscapes", {A: frame_a(), B: frame_b()})


def perfect() -> dict[str, dict]:
    """Every instance exactly, with its class; a crowd region is not an instance."""
    a, b = frame_a(), frame_b()
    return {
        A: found(np.stack([a == 26001, a == 24001]), [CAR, PERSON], [0.9, 0.8]),
        B: found(np.stack([b == 26002, b == 33001]), [CAR, BICYCLE], [0.7, 0.6]),
    }


def found(masks: np.ndarray, labels: list[int], scores: list[float]) -> dict:
    """One frame's predictions as castseg's predict_images returns them."""
    return {"masks": masks, "labels": labels, "scores": scores}


def side_by_side(root: Path, predictions: dict[str, dict], tmp_path: Path):
    """(Cityscapes metrics, COCO metrics) of the same COCO results records."""
    data = convert_split(root, "val", progress=False)
    annotations = tmp_path / "cityscapes_val.json"
    annotations.write_text(json.dumps(data))
    categories = CategoryMap.from_coco(annotations)
    results = []
    for record in data["images"]:
        frame = predictions[Path(record["file_name"]).name.replace("_leftImg8bit.png", "")]
        results += encode_results(
            record["id"], frame["masks"], frame["labels"], frame["scores"], categories.to_coco
        )
    return evaluate_cityscapes_results(results, annotations, root), evaluate_coco(
        results, annotations
    )


def test_perfect_predictions_score_100_in_both_metrics(root, tmp_path):
    cityscapes, coco = side_by_side(root, perfect(), tmp_path)
    assert (cityscapes.ap, cityscapes.ap50) == (100.0, 100.0)
    assert (coco.ap, coco.ap50) == pytest.approx((100.0, 100.0))
    scored = {name for name, ap in cityscapes.per_class.items() if not math.isnan(ap)}
    assert scored == {"car", "person", "bicycle"}  # classes without ground truth are NaN
    assert evaluate_cityscapes(perfect(), root) == cityscapes  # class indices, same score


def test_wrong_class_lowers_ap(root, tmp_path):
    predictions = perfect()
    predictions[A]["labels"] = [TRUCK, PERSON]  # the first car called a truck
    cityscapes, coco = side_by_side(root, predictions, tmp_path)
    # car: one of two found, precision 1 → the official step integration gives 0.5 ...
    assert cityscapes.per_class["car"] == pytest.approx(50.0)
    # ... COCO's 101-point interpolation counts recall 0, 0.01, ..., 0.5
    assert coco.per_class["car"] == pytest.approx(100 * 51 / 101)
    assert math.isnan(cityscapes.per_class["truck"])  # no truck in the ground truth
    assert cityscapes.ap == pytest.approx((50 + 100 + 100) / 3)
    assert cityscapes.ap50 == pytest.approx((50 + 100 + 100) / 3)


def test_partial_overlap_against_a_hand_computation(tmp_path):
    """One car found with IoU 0.72: matched at thresholds 0.5 ... 0.7 only."""
    root = write_val(tmp_path / "one", {A: frame_a()})
    a = frame_a()
    partial = a == 26001
    partial[:, 20:27] = False  # 180 of its 250 pixels, nothing outside
    iou = partial.sum() / (a == 26001).sum()
    predictions = {A: found(np.stack([partial, a == 24001]), [CAR, PERSON], [0.9, 0.8])}
    cityscapes, coco = side_by_side(root, predictions, tmp_path)
    thresholds = [0.5 + 0.05 * i for i in range(10)]
    expected_car = 100 * sum(iou > t for t in thresholds) / len(thresholds)
    assert (iou, expected_car) == (pytest.approx(0.72), 50.0)
    assert cityscapes.per_class["car"] == pytest.approx(expected_car)
    assert cityscapes.per_class_ap50["car"] == 100.0
    assert cityscapes.ap == pytest.approx((expected_car + 100) / 2)
    assert coco.per_class["car"] == pytest.approx(expected_car)  # no threshold equals 0.72


def test_streamed_predictions_and_kept_results(root, tmp_path):
    kept = tmp_path / "results"
    frames = ((f"{key}_leftImg8bit.png", found) for key, found in perfect().items())
    assert evaluate_cityscapes(frames, instance_files(root), results_dir=kept).ap == 100.0
    lines = (kept / f"{A}_pred.txt").read_text().splitlines()
    assert [line.split()[:2] for line in lines] == [[f"{A}_0.png", "26"], [f"{A}_1.png", "24"]]
    assert float(lines[0].split()[2]) == 0.9
    with Image.open(kept / f"{A}_1.png") as png:
        assert png.mode == "1" and np.array_equal(np.array(png), frame_a() == 24001)
    with pytest.raises(ValueError, match="not empty"):
        evaluate_cityscapes(perfect(), root, results_dir=kept)


def test_independent_of_environment_and_cwd_and_cleans_up(root, tmp_path, monkeypatch):
    monkeypatch.setenv("CITYSCAPES_DATASET", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("CITYSCAPES_RESULTS", str(tmp_path / "elsewhere"))
    cwd, scratch = tmp_path / "cwd", tmp_path / "scratch"
    cwd.mkdir()
    scratch.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert evaluate_cityscapes(perfect(), root).ap == 100.0
    assert list(cwd.iterdir()) == [] and list(scratch.iterdir()) == []
    assert not (Path(cityscapesscripts.evaluation.__file__).parent / "gtInstances.json").exists()


def test_predictions_must_cover_the_ground_truth(root):
    predictions = perfect()
    with pytest.raises(ValueError, match=f"1 ground-truth frames have no predictions.*{B}"):
        evaluate_cityscapes({A: predictions[A]}, root)
    with pytest.raises(ValueError, match="frame ulm_000000_000019 is not in the ground truth"):
        evaluate_cityscapes({**predictions, "ulm_000000_000019": predictions[A]}, root)
    predictions[B]["labels"] = [CAR, 8]
    with pytest.raises(ValueError, match=r"class indices \[8\] outside \[0, 8\)"):
        evaluate_cityscapes(predictions, root)
    empty = found(np.zeros((0, H, W), bool), [], [])
    metrics = evaluate_cityscapes({A: empty, B: empty}, root)
    assert (metrics.ap, metrics.per_class["car"]) == (0.0, 0.0)


def test_all_predictions_on_void_is_a_clear_error(root):
    """cityscapesScripts issue #89: evaluateMatches itself fails on this input."""
    void = np.zeros((H, W), dtype=bool)
    void[35:40, :30] = True
    empty = found(np.zeros((0, H, W), bool), [], [])
    car_on_void = found(void[None], [CAR], [0.5])
    with pytest.raises(ValueError, match="issue #89"):
        evaluate_cityscapes({A: car_on_void, B: empty}, root)


def test_matching_equals_the_official_assignment(root, tmp_path, monkeypatch):
    """match_frame against cityscapesscripts' assignGt2Preds, run with the np.in1d it needs."""
    a = frame_a()
    spanning = np.zeros((H, W), dtype=bool)
    spanning[8:25, 20:45] = True  # the car, the car group and road
    on_void = (a == 24001) | (a == 0)
    masks = np.stack([a == 26001, spanning, on_void, a == 7, np.zeros((H, W), bool), spanning])
    label_ids = [26, 26, 24, 7, 26, 29]  # road, an empty mask and a caravan are not scored
    text = write_frame_results(
        tmp_path / "res", A, masks, label_ids, [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    )
    args = copy.deepcopy(official_args)
    args.predictionPath = str((tmp_path / "res").absolute())
    setInstanceLabels(args)
    pred_info = readPredInfo(str(text), args)
    gt_file = instance_files(root)[0]
    gt = filterGtInstances(instances2dict([str(gt_file)])[str(gt_file.absolute())], args)

    ours = match_frame(gt, gt_file, pred_info, args.instLabels)
    monkeypatch.setattr(np, "in1d", lambda a, b: np.isin(a, b).ravel(), raising=False)
    with Image.open(gt_file) as png:
        theirs_gt, theirs_pred = assignGt2Preds(gt, png, pred_info, args)
    assert ours == {"groundTruth": theirs_gt, "prediction": theirs_pred}
    assert len(ours["prediction"]["car"]) == 2
    assert ours["prediction"]["person"][0]["voidIntersection"] == 300
    assert {g["instID"] for g in ours["prediction"]["car"][1]["matchedGt"]} == {26001, 26}


def test_export_rejects_inconsistent_input(tmp_path):
    masks = np.zeros((2, H, W), dtype=bool)
    with pytest.raises(ValueError, match="expected masks"):
        write_frame_results(tmp_path, A, masks, [26], [0.5, 0.4])
    with pytest.raises(ValueError, match=r"\[77\] are not Cityscapes labelIds"):
        write_frame_results(tmp_path, A, masks, [26, 77], [0.5, 0.4])
