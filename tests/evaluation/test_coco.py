"""evaluate_coco and encode_results against pycocotools' COCOeval run directly (the oracle)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from castseg.cli import main
from castseg.evaluation import coco as coco_module
from castseg.evaluation.coco import encode_results, evaluate_coco, format_metrics

H, W = 20, 24
CATEGORY_IDS = [3, 7]  # COCO ids are not contiguous class indices


def box(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


# (image id, class index, mask) of the ground truth: 3 images, 2 classes, one object missed below.
GT = [
    (1, 0, box(0, 0, 10, 10)),
    (1, 1, box(10, 12, 20, 24)),
    (2, 0, box(2, 2, 12, 12)),
    (2, 0, box(5, 14, 15, 22)),
    (3, 1, box(0, 0, 20, 8)),
]
# (image id, class index, mask, score): an exact hit, a loose hit (IoU 0.6, counts at 0.5 but
# not 0.75), a confident false positive, a wrong-class prediction, and GT (2, box 2) missed.
PREDICTIONS = [
    (1, 0, box(0, 0, 10, 10), 0.9),
    (1, 1, box(12, 15, 20, 24), 0.8),
    (1, 0, box(12, 0, 20, 8), 0.95),
    (2, 0, box(2, 2, 12, 12), 0.7),
    (3, 0, box(0, 0, 20, 8), 0.6),
    (3, 1, box(0, 0, 20, 8), 0.5),
]


def annotations_dict() -> dict:
    annotations = []
    for i, (image_id, label, mask) in enumerate(GT):
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode()
        annotations.append(
            {
                "id": i + 1,
                "image_id": image_id,
                "category_id": CATEGORY_IDS[label],
                "segmentation": rle,
                "area": float(mask.sum()),
                "bbox": [float(v) for v in mask_util.toBbox(rle)],
                "iscrowd": 0,
            }
        )
    return {
        "images": [{"id": i, "height": H, "width": W, "file_name": f"{i}.png"} for i in (1, 2, 3)],
        "annotations": annotations,
        "categories": [{"id": 3, "name": "car"}, {"id": 7, "name": "person"}],
    }


def results_from(predictions: list) -> list[dict]:
    results = []
    for image_id in sorted({p[0] for p in predictions}):
        rows = [p for p in predictions if p[0] == image_id]
        results += encode_results(
            image_id,
            torch.from_numpy(np.stack([r[2] for r in rows])),
            torch.tensor([r[1] for r in rows]),
            torch.tensor([r[3] for r in rows]),
            CATEGORY_IDS,
        )
    return results


def oracle_stats(results: list[dict], gt: dict, cat_ids: list[int] | None = None) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "segm")
        if cat_ids is not None:
            evaluator.params.catIds = cat_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def test_ap_matches_pycocotools_on_handmade_example():
    gt, results = annotations_dict(), results_from(PREDICTIONS)
    metrics = evaluate_coco(results, gt)
    stats = oracle_stats(results, gt)
    assert 0 < metrics.ap75 < metrics.ap50 < 100
    assert metrics.ap == pytest.approx(stats[0] * 100, abs=1e-6)
    assert metrics.ap50 == pytest.approx(stats[1] * 100, abs=1e-6)
    assert metrics.ap75 == pytest.approx(stats[2] * 100, abs=1e-6)
    assert set(metrics.per_class) == {"car", "person"}
    for name, cat_id in (("car", 3), ("person", 7)):
        assert metrics.per_class[name] == pytest.approx(
            oracle_stats(results, gt, [cat_id])[0] * 100, abs=1e-6
        )
    assert metrics.per_class["car"] != pytest.approx(metrics.per_class["person"])


def test_pycocotools_fallback_gives_the_same_metrics(monkeypatch):
    gt, results = annotations_dict(), results_from(PREDICTIONS)
    expected = evaluate_coco(results, gt)
    monkeypatch.setattr(coco_module, "COCO", COCO)
    monkeypatch.setattr(coco_module, "COCOeval", COCOeval)
    fallback = evaluate_coco(results, gt)
    assert (fallback.ap, fallback.ap50, fallback.ap75) == pytest.approx(
        (expected.ap, expected.ap50, expected.ap75)
    )
    assert fallback.per_class == pytest.approx(expected.per_class)


def test_perfect_predictions_give_ap_100():
    metrics = evaluate_coco(results_from([(*g, 1.0) for g in GT]), annotations_dict())
    assert (metrics.ap, metrics.ap50, metrics.ap75) == pytest.approx((100.0, 100.0, 100.0))
    assert metrics.per_class == pytest.approx({"car": 100.0, "person": 100.0})


def test_empty_results_give_ap_zero():
    gt = annotations_dict()
    gt["categories"].append({"id": 9, "name": "bicycle"})
    metrics = evaluate_coco([], gt)
    assert (metrics.ap, metrics.ap50, metrics.ap75) == (0.0, 0.0, 0.0)
    assert metrics.per_class["car"] == 0.0
    assert math.isnan(metrics.per_class["bicycle"])  # no ground truth: AP undefined


def test_unknown_ids_are_named():
    gt, results = annotations_dict(), results_from(PREDICTIONS)
    with pytest.raises(ValueError, match=r"image ids \[42\]"):
        evaluate_coco([*results, {**results[0], "image_id": 42}], gt)
    with pytest.raises(ValueError, match=r"category ids \[5\]"):
        evaluate_coco([*results, {**results[0], "category_id": 5}], gt)


def test_files_and_bad_files(tmp_path):
    gt_path, dt_path = tmp_path / "gt.json", tmp_path / "dt.json"
    gt_path.write_text(json.dumps(annotations_dict()))
    dt_path.write_text(json.dumps(results_from(PREDICTIONS)))
    assert evaluate_coco(dt_path, gt_path) == evaluate_coco(
        results_from(PREDICTIONS), annotations_dict()
    )
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        evaluate_coco(dt_path, broken)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        evaluate_coco(tmp_path / "missing.json", gt_path)
    with pytest.raises(ValueError, match="categories"):
        evaluate_coco(dt_path, {"images": [], "annotations": []})


def test_encode_results_round_trip_and_category_map():
    masks = torch.from_numpy(np.stack([box(0, 0, 5, 5), box(3, 4, 20, 9)]))
    records = encode_results(7, masks, torch.tensor([1, 0]), torch.tensor([0.5, 0.25]), [3, 7])
    assert [r["category_id"] for r in records] == [7, 3]
    assert [r["score"] for r in records] == [0.5, 0.25]
    assert all(r["image_id"] == 7 and isinstance(r["segmentation"]["counts"], str) for r in records)
    decoded = np.stack([mask_util.decode(r["segmentation"]) for r in records]).astype(bool)
    np.testing.assert_array_equal(decoded, masks.numpy())
    by_function = encode_results(7, masks, [1, 0], [0.5, 0.25], lambda label: 100 + label)
    assert [r["category_id"] for r in by_function] == [101, 100]
    assert encode_results(7, torch.zeros(0, H, W, dtype=torch.bool), [], [], [3]) == []


def test_cli_eval_prints_ap(tmp_path, capsys):
    gt_path, dt_path = tmp_path / "gt.json", tmp_path / "dt.json"
    gt_path.write_text(json.dumps(annotations_dict()))
    dt_path.write_text(json.dumps(results_from(PREDICTIONS)))
    assert main(["eval", "--results", str(dt_path), "--annotations", str(gt_path)]) == 0
    out = capsys.readouterr().out
    expected = format_metrics(evaluate_coco(dt_path, gt_path))
    assert out.strip() == expected
    ap_line = next(line for line in out.splitlines() if line.startswith("AP "))
    assert float(ap_line.split()[1]) == pytest.approx(
        oracle_stats(results_from(PREDICTIONS), annotations_dict())[0] * 100, abs=0.01
    )
    assert "person" in out and "AP50" in out


def test_cli_eval_errors_name_the_problem(tmp_path, capsys):
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(annotations_dict()))
    assert main(["eval", "--results", str(tmp_path / "nope.json"), "--annotations", str(gt_path)])
    assert "nope.json" in capsys.readouterr().err
    assert main(["eval", "--annotations", str(gt_path)]) == 2
    assert "exactly one of a CHECKPOINT, --onnx, --results or --config" in capsys.readouterr().err
    assert main(["eval", "--results", str(gt_path)]) == 2
    assert "--annotations is required" in capsys.readouterr().err


def test_cli_eval_checkpoint_delegates_to_training(tmp_path, capsys, monkeypatch):
    checkpoint = tmp_path / "last.ckpt"
    torch.save({}, checkpoint)  # a torch.save zip file: `eval` takes it for a checkpoint
    calls = []

    def fake_evaluate_checkpoint(path, annotations, *, image_root, progress, onnx):
        assert not onnx
        calls.append((path, annotations, image_root))
        return types.SimpleNamespace(metrics=evaluate_coco([], annotations_dict()), results=[])

    fake = types.ModuleType("castseg.deploy.evaluate")
    fake.evaluate_checkpoint = fake_evaluate_checkpoint
    monkeypatch.setitem(sys.modules, "castseg.deploy.evaluate", fake)
    argv = ["eval", str(checkpoint), "--annotations", "gt.json", "--data", str(tmp_path)]
    assert main(argv) == 0
    assert calls == [(checkpoint, Path("gt.json"), tmp_path)]
    assert "AP50" in capsys.readouterr().out
