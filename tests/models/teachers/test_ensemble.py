"""EnsembleTeacher: fusion against a brute-force loop, IoU against pycocotools, round trips."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from castseg.data.coco import CategoryMap
from castseg.models.checkpoints import load_checkpoint, save_checkpoint
from castseg.models.registry import build_model
from castseg.models.student import build_student
from castseg.models.teachers.ensemble import EnsembleTeacher, fuse_instances, mask_iou
from castseg.models.teachers.hf_universal import HFUniversalTeacher

CLASSES = ["person", "car", "bicycle"]


@pytest.fixture(scope="module")
def eomt_dir(make_tiny_eomt):
    """A tiny random EoMT whose labels include the three dataset classes."""
    return make_tiny_eomt({0: "bicycle", 1: "car", 2: "dog", 3: "person"}, seed=3)


def hf_teacher(path, classes=CLASSES):
    with pytest.warns(UserWarning, match="no image processor config"):
        return HFUniversalTeacher.from_pretrained(str(path), classes)


def members(eomt_dir):
    torch.manual_seed(0)
    return [build_student("tiny", 3), build_student("tiny", 3), hf_teacher(eomt_dir)]


def brute_force_fusion(masks, probs, member, threshold):
    """The fusion rule written out pair by pair: masks [K, h, w] bool, probs [K, C+1] numpy."""
    k, c = probs.shape[0], probs.shape[1] - 1
    score = [float(probs[i, :c].max()) for i in range(k)]
    label = [int(probs[i, :c].argmax()) for i in range(k)]

    def iou(i, j):
        union = np.logical_or(masks[i], masks[j]).sum()
        return np.logical_and(masks[i], masks[j]).sum() / union if union else 0.0

    order = sorted(range(k), key=lambda i: (-score[i], i))
    suppressed = [False] * k
    fused = probs.astype(np.float64).copy()
    for position, i in enumerate(order):
        if suppressed[i]:
            continue
        group = [i]
        for j in order[position + 1 :]:
            same = member[j] != member[i] and label[j] == label[i]
            if not suppressed[j] and same and iou(i, j) >= threshold:
                suppressed[j] = True
                group.append(j)
        weights = np.array([score[j] for j in group])
        fused[i] = (weights[:, None] * probs[group]).sum(0) / weights.sum()
    for j in range(k):
        if suppressed[j]:
            fused[j] = np.eye(c + 1)[c]
    return fused, np.array([not s for s in suppressed])


def random_instances(seed, k=12, num_members=3, num_classes=2):
    """Queries jittered around three boxes, so members often propose the same instance."""
    g = torch.Generator().manual_seed(seed)
    boxes = [(0, 0, 5, 5), (3, 2, 8, 7), (1, 4, 5, 9)]
    masks = torch.zeros(k, 10, 10, dtype=torch.bool)
    for i in range(k):
        y0, x0, y1, x1 = boxes[int(torch.randint(3, (1,), generator=g))]
        dy, dx = torch.randint(-1, 2, (2,), generator=g).tolist()
        masks[i, max(0, y0 + dy) : y1 + dy, max(0, x0 + dx) : x1 + dx] = True
    magnitude = torch.rand(k, 10, 10, generator=g) + 0.1
    logits = torch.where(masks, magnitude, -magnitude)
    probs = (2 * torch.randn(k, num_classes + 1, generator=g)).softmax(-1)
    member = torch.randint(num_members, (k,), generator=g)
    return logits, probs, member


def test_mask_iou_agrees_with_pycocotools():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(5, 7, 9, generator=g) > 0.5
    b = torch.rand(4, 7, 9, generator=g) > 0.6
    a[1] = False
    b[2] = False

    def rle(masks):
        return mask_utils.encode(np.asfortranarray(masks.permute(1, 2, 0).numpy().astype(np.uint8)))

    expected = mask_utils.iou(rle(a), rle(b), [0] * len(b))
    np.testing.assert_allclose(mask_iou(a, b).numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.8])
def test_fusion_matches_the_brute_force_rule(threshold):
    suppressed = 0
    for seed in range(15):
        logits, probs, member = random_instances(seed)
        fused, kept = fuse_instances(logits, probs, member, iou=threshold)
        expected, expected_kept = brute_force_fusion(
            (logits > 0).numpy(), probs.numpy(), member.tolist(), threshold
        )
        np.testing.assert_array_equal(kept.numpy(), expected_kept)
        np.testing.assert_allclose(fused.numpy(), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fused.sum(-1), torch.ones(len(fused)))
        suppressed += int((~kept).sum())
    assert suppressed > 0


def test_one_member_suppresses_nothing():
    logits, probs, _ = random_instances(0)
    fused, kept = fuse_instances(logits, probs, torch.zeros(12, dtype=torch.long))
    assert kept.all()
    torch.testing.assert_close(fused, probs)


def test_forward_fuses_the_members_outputs(eomt_dir):
    ensemble = EnsembleTeacher(members(eomt_dir), iou=0.3).eval()
    images = torch.rand(2, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pred = ensemble(images)
        outs = [m(images) for m in ensemble.members]
    assert pred.mask_logits.shape == (2, 20 + 20 + 4, 16, 16)
    assert pred.class_logits.shape == (2, 44, 4) and pred.aux == []
    masks = torch.cat(
        [F.interpolate(o.mask_logits, size=(16, 16), mode="bilinear") for o in outs], 1
    )
    probs = torch.cat([o.class_logits.softmax(-1) for o in outs], 1)
    member = [0] * 20 + [1] * 20 + [2] * 4
    for b in range(2):
        expected, _ = brute_force_fusion((masks[b] > 0).numpy(), probs[b].numpy(), member, 0.3)
        np.testing.assert_allclose(pred.class_logits[b].softmax(-1).numpy(), expected, atol=1e-6)
    torch.testing.assert_close(pred.mask_logits, masks)
    grid = outs[0].embeddings.shape[-2:]
    mean = sum(F.interpolate(o.embeddings, size=grid, mode="bilinear") for o in outs)
    torch.testing.assert_close(pred.embeddings, mean / mean.norm(dim=1, keepdim=True))


def test_top_k_keeps_the_best_fused_queries(eomt_dir):
    parts = members(eomt_dir)
    full = EnsembleTeacher(parts).eval()
    top = EnsembleTeacher(parts, top_k=10).eval()
    images = torch.rand(1, 3, 56, 56)
    with torch.no_grad():
        everything, best = full(images), top(images)
    assert best.mask_logits.shape == (1, 10, 16, 16)
    scores = everything.class_logits.softmax(-1)[0, :, :-1].amax(-1)
    chosen = scores.sort(descending=True, stable=True).indices[:10]
    torch.testing.assert_close(best.mask_logits[0], everything.mask_logits[0, chosen])
    with pytest.raises(ValueError, match="top_k 50 exceeds the members' 44 queries"):
        EnsembleTeacher(parts, top_k=50)(images)


def test_members_must_agree_on_classes(eomt_dir):
    torch.manual_seed(0)
    student = build_student("tiny", 3)
    with pytest.raises(ValueError, match=r"different numbers of classes: \[3, 4\]"):
        EnsembleTeacher([student, build_student("tiny", 4)])
    reordered = hf_teacher(eomt_dir, ["car", "person", "bicycle"])
    with pytest.raises(ValueError, match="member 1 .* has classes"):
        EnsembleTeacher([student, reordered], class_names=CLASSES)
    with pytest.raises(ValueError, match=r"3 classes"):
        EnsembleTeacher([student], class_names=["person", "car"])


def test_config_dict_round_trip_and_parameter_groups(eomt_dir):
    ensemble = EnsembleTeacher(members(eomt_dir), iou=0.4, top_k=30)
    args = json.loads(json.dumps(ensemble.config_dict()))
    assert args["architecture"] == "ensemble" and args["num_classes"] == 3
    assert args["class_names"] == CLASSES and len(args["members"]) == 3
    rebuilt = build_model(args)
    rebuilt.load_state_dict(ensemble.state_dict())
    images = torch.rand(2, 3, 56, 56)
    with torch.no_grad():
        a, b = ensemble.eval()(images), rebuilt.eval()(images)
    assert torch.equal(a.mask_logits, b.mask_logits)
    assert torch.equal(a.class_logits, b.class_logits)
    assert torch.equal(a.embeddings, b.embeddings)

    groups = ensemble.parameter_groups()
    assert set(groups) == {"encoder", "decoder"}
    for name, params in groups.items():
        expected = [p for m in ensemble.members for p in m.parameter_groups()[name]]
        assert [id(p) for p in params] == [id(p) for p in expected]
    assert sum(len(p) for p in groups.values()) == len(list(ensemble.parameters()))


def test_checkpoint_round_trip_stores_every_members_transformers_model(eomt_dir, tmp_path):
    ensemble = EnsembleTeacher(members(eomt_dir), iou=0.4).eval()
    categories = CategoryMap(ids=(1, 2, 3), names=tuple(CLASSES))
    path = save_checkpoint(
        tmp_path / "e.pt", ensemble, category_map=categories, image_size=(56, 56)
    )
    stored = torch.load(path, weights_only=True)["hub_models"]
    assert sorted(stored) == [
        "members.0.encoder.backbone",
        "members.1.encoder.backbone",
        "members.2.model",
    ]
    loaded = load_checkpoint(path).model
    images = torch.rand(2, 3, 56, 56, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = ensemble(images), loaded(images)
    assert torch.equal(a.mask_logits, b.mask_logits)
    assert torch.equal(a.class_logits, b.class_logits)
    assert torch.equal(a.embeddings, b.embeddings)
