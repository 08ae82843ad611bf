"""predict_images and evaluate_model against a stub whose predictions are known exactly.

The fixture images show axis-aligned rectangles drawn in pure red, green or blue; colour channel
c is the class c. `ColourSegmenter` turns channel c into query c's mask, so its masks match the
ground truth and its class logits decide the labels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from torch import Tensor, nn

from castseg.data.coco import CategoryMap, CocoInstanceDataset
from castseg.data.views import ResizeView
from castseg.deploy.evaluate import evaluate_checkpoint
from castseg.evaluation.instance_inference import instances_from_predictions
from castseg.models.checkpoints import save_checkpoint
from castseg.models.student import build_student
from castseg.runtime.evaluate import evaluate_model
from castseg.runtime.inference import predict_images
from castseg.structures import Predictions

CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 9, "name": "bird"}]
# Per image: (height, width) and rectangles (channel, top, bottom, left, right).
SCENES = [
    ((56, 56), [(0, 4, 20, 6, 30), (1, 30, 50, 10, 40), (2, 8, 24, 36, 52)]),
    ((56, 56), [(0, 30, 52, 30, 54), (2, 2, 14, 2, 50)]),
    ((56, 56), [(1, 10, 40, 10, 40)]),
]


class ColourSegmenter(nn.Module):
    """Query c's mask is colour channel c (logit ±10); its class logits are class_logits[c].

    class_logits: [3, C+1]. `seen` counts the images it was given.
    """

    def __init__(self, class_logits: Tensor) -> None:
        super().__init__()
        self.register_buffer("class_logits", class_logits.float())
        self.seen = 0

    def forward(self, images: Tensor) -> Predictions:
        self.seen += images.shape[0]
        mask_logits = torch.where(images > 0.5, 10.0, -10.0)  # [B, 3, H, W]
        class_logits = self.class_logits.expand(images.shape[0], -1, -1)
        return Predictions(mask_logits, class_logits)


def confident(labels: list[int], num_classes: int = 3, logit: float = 10.0) -> Tensor:
    """Class logits [len(labels), C+1]: query q is class labels[q] with the given logit."""
    logits = torch.full((len(labels), num_classes + 1), -10.0)
    logits[torch.arange(len(labels)), torch.tensor(labels)] = logit
    return logits


def write_scenes(root: Path, scenes: list) -> Path:
    """PNGs under root/images and root/instances.json with RLE masks; returns the json."""
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for image_id, ((height, width), rects) in enumerate(scenes, start=1):
        pixels = np.zeros((height, width, 3), dtype=np.uint8)
        for channel, top, bottom, left, right in rects:
            pixels[top:bottom, left:right, channel] = 255
            mask = np.zeros((height, width), dtype=np.uint8)
            mask[top:bottom, left:right] = 1
            rle = mask_utils.encode(np.asfortranarray(mask))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": CATEGORIES[channel]["id"],
                    "segmentation": {"size": [height, width], "counts": rle["counts"].decode()},
                    "area": float(mask_utils.area(rle)),
                    "bbox": mask_utils.toBbox(rle).tolist(),
                    "iscrowd": 0,
                }
            )
        name = f"scene_{image_id}.png"
        Image.fromarray(pixels).save(root / "images" / name)
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
    path = root / "instances.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": CATEGORIES})
    )
    return path


@pytest.fixture(scope="module")
def annotations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scenes(tmp_path_factory.mktemp("scenes"), SCENES)


def test_predict_images_maps_masks_back_to_each_original_size() -> None:
    image = torch.zeros(3, 112, 84)
    image[0, 20:80, 10:60] = 1.0
    small = torch.zeros(3, 28, 42)
    small[2, 5:20, 8:30] = 1.0
    model = ColourSegmenter(confident([0, 1, 2]))
    big_out, small_out = predict_images(model, [image, small], ResizeView((56, 56)), top_k=3)

    assert model.seen == 2  # one batch
    # The other queries' channels are empty in these images, so their instances are dropped.
    assert big_out["masks"].shape == (1, 112, 84)
    assert small_out["masks"].shape == (1, 28, 42)
    for out, truth, label in [(big_out, image[0] > 0, 0), (small_out, small[2] > 0, 2)]:
        assert out["labels"][0] == label
        assert out["scores"][0] > 0.99
        assert out["class_probs"].shape[1] == 4
        inter = (out["masks"][0] & truth).sum()
        union = (out["masks"][0] | truth).sum()
        assert inter / union > 0.9
        assert out["masks"].device.type == "cpu"


def test_predict_images_matches_one_image_at_a_time_and_restores_training_mode() -> None:
    torch.manual_seed(0)
    student = build_student("tiny", num_classes=3).train()
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 56, 70, generator=gen), torch.rand(3, 84, 56, generator=gen)]
    view = ResizeView((56, 56))
    batched = predict_images(student, images, view, top_k=10)
    assert student.training

    student.eval()
    for image, out in zip(images, batched, strict=True):
        with torch.no_grad():
            pred = student(view(image)[0][None])
        logits = view.unresize(pred.mask_logits[0], tuple(image.shape[1:]))
        expected = instances_from_predictions(
            logits, pred.class_logits[0], tuple(image.shape[1:]), top_k=10
        )
        assert out["masks"].shape[1:] == image.shape[1:]
        assert len(out["scores"]) <= 10
        torch.testing.assert_close(out["scores"], expected["scores"], atol=1e-5, rtol=1e-4)
        assert torch.equal(out["labels"], expected["labels"])


def test_perfect_predictions_score_ap_100(annotations: Path) -> None:
    dataset = CocoInstanceDataset(annotations)
    result = evaluate_model(
        ColourSegmenter(confident([0, 1, 2])),
        dataset,
        image_size=(56, 56),
        batch_size=2,
        progress=False,
    )
    assert result.metrics.ap == pytest.approx(100.0)
    assert result.metrics.per_class == pytest.approx({"cat": 100.0, "dog": 100.0, "bird": 100.0})
    assert {r["category_id"] for r in result.results} == {3, 7, 9}
    assert {r["image_id"] for r in result.results} == {1, 2, 3}
    assert all(isinstance(r["segmentation"]["counts"], str) for r in result.results)


def test_a_confidently_wrong_class_lowers_ap(annotations: Path) -> None:
    # Red rectangles (cats) called dogs, more confidently than the real dogs.
    logits = confident([0, 1, 2])
    logits[0] = confident([1], logit=12.0)[0]
    result = evaluate_model(
        ColourSegmenter(logits),
        CocoInstanceDataset(annotations),
        image_size=(56, 56),
        progress=False,
    )
    assert result.metrics.ap < 95.0
    assert result.metrics.per_class["dog"] < 75.0
    assert result.metrics.per_class["bird"] == pytest.approx(100.0)


def test_a_subset_is_scored_against_its_own_images_only(annotations: Path) -> None:
    logits = confident([0, 1, 2])
    dataset = CocoInstanceDataset(annotations, image_ids=[3])
    result = evaluate_model(ColourSegmenter(logits), dataset, image_size=(56, 56), progress=False)
    assert {r["image_id"] for r in result.results} == {3}
    # Image 3 holds only a dog: AP is undefined (NaN) for the other classes, 100 for the dog.
    assert result.metrics.ap == pytest.approx(100.0)
    assert math.isnan(result.metrics.per_class["cat"])


def test_evaluate_checkpoint_runs_a_saved_student(annotations: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    student = build_student("tiny", num_classes=3)
    categories = CategoryMap.from_categories(CATEGORIES)
    path = save_checkpoint(tmp_path / "m.pt", student, category_map=categories, image_size=(56, 56))
    metrics = evaluate_checkpoint(path, annotations, image_root=None, progress=False).metrics
    assert 0.0 <= metrics.ap <= 100.0
    assert set(metrics.per_class) == {"cat", "dog", "bird"}


def test_evaluate_checkpoint_rejects_other_categories(annotations: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    student = build_student("tiny", num_classes=3)
    renamed = [{**c, "name": "horse"} if c["id"] == 7 else c for c in CATEGORIES]
    categories = CategoryMap.from_categories(renamed)
    path = save_checkpoint(tmp_path / "m.pt", student, category_map=categories, image_size=(56, 56))
    with pytest.raises(ValueError, match=r"id 7: 'horse' in the checkpoint, 'dog'"):
        evaluate_checkpoint(path, annotations, image_root=None)
