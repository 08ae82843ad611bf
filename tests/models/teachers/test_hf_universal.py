"""HFUniversalTeacher on tiny random Mask2Former and EoMT models saved to local directories.

The Mask2Former folder is laid out like facebook/mask2former-swin-*-instance on the hub:
config.json of `Mask2FormerForUniversalSegmentation` and a preprocessor_config.json of
`Mask2FormerImageProcessor` with those repositories' keys (a fixed "size" of height and width,
"_max_size", "size_divisor" 32, ...), scaled down. The EoMT folder with a processor is laid out as
the tue-mps/*_eomt_* repositories are saved by transformers: config.json of
`EomtForUniversalSegmentation` and the preprocessor_config.json that `EomtImageProcessor` writes
(shortest / longest edge, do_split_image, do_pad), with the fixture's own mean and std.
"""

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    EomtImageProcessorPil,
    Mask2FormerConfig,
    Mask2FormerForUniversalSegmentation,
    SwinConfig,
)

from castseg.config import ContrastiveConfig, LossConfig
from castseg.data.coco import CategoryMap
from castseg.models.checkpoints import load_checkpoint, save_checkpoint
from castseg.models.encoder import IMAGENET_MEAN, IMAGENET_STD
from castseg.models.registry import build_model
from castseg.models.teachers.hf_universal import HFUniversalTeacher
from castseg.structures import Instances
from castseg.training.batches import ViewBatch
from castseg.training.module import CastModule
from castseg.training.objective import StageWeights
from castseg.training.optim import OptimSettings

# The model knows a class the dataset lacks ("truck") and orders its labels differently.
MODEL_LABELS = {0: "truck", 1: "person", 2: "car", 3: "traffic light"}
CLASSES = ["traffic_light", "person", "car"]
PROCESSOR_MEAN, PROCESSOR_STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


@pytest.fixture(scope="module")
def mask2former_dir(tmp_path_factory):
    """A tiny random Mask2Former (Swin backbone, 3 decoder layers) with its image processor."""
    torch.manual_seed(0)
    swin = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=swin,
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=32,
        encoder_layers=1,
        decoder_layers=3,
        num_attention_heads=2,
        dim_feedforward=32,
        num_queries=5,
        id2label=MODEL_LABELS,
        label2id={v: k for k, v in MODEL_LABELS.items()},
    )
    path = tmp_path_factory.mktemp("mask2former")
    Mask2FormerForUniversalSegmentation(config).save_pretrained(path)
    processor = {
        "_max_size": 128,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "ignore_index": 255,
        "image_mean": PROCESSOR_MEAN,
        "image_processor_type": "Mask2FormerImageProcessor",
        "image_std": PROCESSOR_STD,
        "num_labels": len(MODEL_LABELS),
        "reduce_labels": False,
        "resample": 2,
        "rescale_factor": 1 / 255,
        "size": {"height": 64, "width": 96},
        "size_divisor": 32,
    }
    (path / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    return path


@pytest.fixture(scope="module")
def eomt_dir(make_tiny_eomt):
    """A tiny random EoMT, saved without an image processor."""
    return make_tiny_eomt(MODEL_LABELS, seed=1)


@pytest.fixture(scope="module")
def eomt_hub_dir(eomt_dir, tmp_path_factory):
    """The tiny EoMT with the preprocessor_config.json its image processor saves."""
    path = tmp_path_factory.mktemp("eomt_hub") / "model"
    shutil.copytree(eomt_dir, path)
    EomtImageProcessorPil(
        size={"shortest_edge": 32, "longest_edge": 32},
        image_mean=PROCESSOR_MEAN,
        image_std=PROCESSOR_STD,
    ).save_pretrained(path)
    saved = json.loads((path / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"].startswith("EomtImageProcessor")
    return path


def expected_probs(model_logits):
    """Dataset class distribution by summing model probabilities: [..., C'+1] → [..., C+1]."""
    p = model_logits.softmax(-1)
    return torch.stack([p[..., 3], p[..., 1], p[..., 2], p[..., 0] + p[..., 4]], dim=-1)


def test_mask2former_matches_the_model_with_labels_mapped_by_name(mask2former_dir):
    teacher = HFUniversalTeacher.from_pretrained(str(mask2former_dir), CLASSES, proj_dim=8).eval()
    images = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(PROCESSOR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PROCESSOR_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        pred = teacher(images)
        raw = teacher.model(pixel_values=(images - mean) / std, output_auxiliary_logits=True)

    assert pred.mask_logits.shape == (2, 5, 16, 24) and pred.class_logits.shape == (2, 5, 4)
    torch.testing.assert_close(pred.mask_logits, raw.masks_queries_logits)
    torch.testing.assert_close(
        pred.class_logits.softmax(-1), expected_probs(raw.class_queries_logits)
    )
    assert len(pred.aux) == 2 == len(raw.auxiliary_logits)
    for layer, reference in zip(pred.aux, raw.auxiliary_logits, strict=True):
        torch.testing.assert_close(layer.mask_logits, reference["masks_queries_logits"])
        torch.testing.assert_close(
            layer.class_logits.softmax(-1), expected_probs(reference["class_queries_logits"])
        )
    assert pred.embeddings.shape == (2, 8, 16, 24)
    torch.testing.assert_close(pred.embeddings.norm(dim=1), torch.ones(2, 16, 24))


def test_mask2former_fits_and_pads_then_crops_back_to_the_image(mask2former_dir):
    teacher = HFUniversalTeacher.from_pretrained(
        str(mask2former_dir), CLASSES, proj_dim=8, input_size=(50, 50)
    ).eval()
    images = torch.rand(1, 3, 28, 36, generator=torch.Generator().manual_seed(1))
    mean = torch.tensor(PROCESSOR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PROCESSOR_STD).view(1, 3, 1, 1)
    # 28 × 36 scaled by 50/36 is 39 × 50; the canvas 50 × 50 is padded to 64 × 64
    fitted = F.interpolate((images - mean) / std, size=(39, 50), mode="bilinear", antialias=True)
    pixels = torch.zeros(1, 3, 64, 64)
    pixels[..., :39, :50] = fitted
    with torch.no_grad():
        pred = teacher(images)
        raw = teacher.model(pixel_values=pixels)
    # stride 4: the image covers 9.75 × 12.5 of the 16 × 16 outputs
    assert pred.mask_logits.shape == (1, 5, 10, 13) and pred.embeddings.shape == (1, 8, 10, 13)
    torch.testing.assert_close(pred.mask_logits, raw.masks_queries_logits[..., :10, :13])


def test_eomt_uses_patch_tokens_and_imagenet_statistics_without_a_processor(eomt_dir):
    with pytest.warns(UserWarning, match="no image processor config"):
        teacher = HFUniversalTeacher.from_pretrained(str(eomt_dir), CLASSES, proj_dim=8)
    teacher.eval()
    assert teacher.normalisation == {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        pred = teacher(images)
        raw = teacher.model(pixel_values=(images - mean) / std)
        tokens = raw.last_hidden_state[:, 4 + 2 :].transpose(1, 2).reshape(2, 32, 4, 4)
        embeddings = teacher.head(tokens)
    torch.testing.assert_close(pred.mask_logits, raw.masks_queries_logits)
    torch.testing.assert_close(
        pred.class_logits.softmax(-1), expected_probs(raw.class_queries_logits)
    )
    torch.testing.assert_close(pred.embeddings, embeddings)
    assert pred.aux == []
    # a 40 × 60 image is fitted to 21 × 32 of the fixed 32 × 32 canvas
    wide = teacher(torch.rand(1, 3, 40, 60))
    assert wide.mask_logits.shape == (1, 4, 11, 16) and wide.embeddings.shape == (1, 8, 3, 4)
    with pytest.raises(ValueError, match="image_size"):
        HFUniversalTeacher(teacher.model, CLASSES, [[3], [1], [2]], input_size=(64, 64))


def test_eomt_as_published_normalises_with_its_processor_statistics(eomt_hub_dir):
    teacher = HFUniversalTeacher.from_pretrained(str(eomt_hub_dir), CLASSES, proj_dim=8).eval()
    assert teacher.normalisation == {"mean": PROCESSOR_MEAN, "std": PROCESSOR_STD}
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    mean = torch.tensor(PROCESSOR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PROCESSOR_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        pred = teacher(images)
        raw = teacher.model(pixel_values=(images - mean) / std)
    torch.testing.assert_close(pred.mask_logits, raw.masks_queries_logits)


def test_pooled_labels_sum_their_probabilities(mask2former_dir):
    teacher = HFUniversalTeacher.from_pretrained(
        str(mask2former_dir), ["vehicle", "person"], label_map={"vehicle": ["car", "truck"]}
    ).eval()
    images = torch.rand(1, 3, 64, 96)  # the processor's size: not resized
    with torch.no_grad():
        probs = teacher(images).class_logits.softmax(-1)
        mean = torch.tensor(PROCESSOR_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(PROCESSOR_STD).view(1, 3, 1, 1)
        p = teacher.model(pixel_values=(images - mean) / std).class_queries_logits.softmax(-1)
    expected = torch.stack([p[..., 0] + p[..., 2], p[..., 1], p[..., 3] + p[..., 4]], dim=-1)
    torch.testing.assert_close(probs, expected)


def test_missing_directory_and_unknown_parts_are_reported(mask2former_dir, tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        HFUniversalTeacher.from_pretrained(str(missing), CLASSES)
    with pytest.raises(ValueError, match=r"unknown trainable parts \['neck'\].*pixel_decoder"):
        HFUniversalTeacher.from_pretrained(str(mask2former_dir), CLASSES, trainable=["neck"])


def test_config_dict_round_trip_gives_identical_outputs(mask2former_dir, eomt_dir):
    with pytest.warns(UserWarning):
        eomt = HFUniversalTeacher.from_pretrained(str(eomt_dir), CLASSES, trainable=["class_head"])
    for teacher in (HFUniversalTeacher.from_pretrained(str(mask2former_dir), CLASSES), eomt):
        args = json.loads(json.dumps(teacher.config_dict()))
        assert args["architecture"] == "hf_universal" and args["num_classes"] == 3
        rebuilt = build_model(args)
        rebuilt.load_state_dict(teacher.state_dict())
        assert rebuilt.trainable == teacher.trainable
        assert [p.requires_grad for p in rebuilt.parameters()] == [
            p.requires_grad for p in teacher.parameters()
        ]
        images = torch.rand(2, 3, 32, 48)
        with torch.no_grad():
            a, b = teacher.eval()(images), rebuilt.eval()(images)
        assert torch.equal(a.mask_logits, b.mask_logits)
        assert torch.equal(a.class_logits, b.class_logits)
        assert torch.equal(a.embeddings, b.embeddings)


def test_checkpoint_round_trip_gives_identical_outputs(mask2former_dir, tmp_path):
    teacher = HFUniversalTeacher.from_pretrained(str(mask2former_dir), CLASSES).eval()
    categories = CategoryMap(ids=(1, 2, 3), names=tuple(CLASSES))
    path = save_checkpoint(tmp_path / "t.pt", teacher, category_map=categories, image_size=(32, 48))
    assert list(torch.load(path, weights_only=True)["hub_models"]) == ["model"]
    loaded = load_checkpoint(path).model
    assert loaded.trainable == teacher.trainable
    images = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        a, b = teacher(images), loaded(images)
    assert torch.equal(a.mask_logits, b.mask_logits)
    assert torch.equal(a.class_logits, b.class_logits)
    assert torch.equal(a.embeddings, b.embeddings)


def test_one_step_changes_only_trainable_parts(mask2former_dir):
    torch.manual_seed(0)
    teacher = HFUniversalTeacher.from_pretrained(str(mask2former_dir), CLASSES, proj_dim=8)
    groups = teacher.parameter_groups()
    ids = [id(p) for group in groups.values() for p in group]
    assert sorted(ids) == sorted(id(p) for p in teacher.parameters())
    assert {id(p) for p in groups["encoder"]} == {
        id(p) for p in teacher.parts()["backbone"][0].parameters()
    }
    settings = OptimSettings(
        lr={"encoder": 1e-2, "decoder": 1e-2}, weight_decay=0.0, betas=(0.9, 0.999), schedule="poly"
    )
    module = CastModule(
        teacher,
        num_classes=3,
        loss=LossConfig(num_points=64),
        contrastive=ContrastiveConfig(num_negatives=8),
        weights=StageWeights(lambda_semi=0.0, lambda_pxl=0.2),
        optim=settings,
        steps=10,
    )
    optimizer = module.configure_optimizers()["optimizer"]
    module.log = lambda *args, **kwargs: None
    module.optimizers = lambda: optimizer
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[0, 4:30, 4:30] = True
    masks[1, 34:60, 20:50] = True
    batch = ViewBatch(torch.rand(2, 3, 64, 64), [Instances(masks, torch.tensor([0, 2]))] * 2)
    before = {name: p.detach().clone() for name, p in teacher.named_parameters()}
    teacher.train()
    assert not teacher.parts()["backbone"][0].training
    module.training_step({"labeled": batch}, 0).backward()
    optimizer.step()

    changed = {n for n, p in teacher.named_parameters() if not torch.equal(p, before[n])}
    frozen = {n for n, p in teacher.named_parameters() if not p.requires_grad}
    assert frozen and not changed & frozen
    assert any(n.startswith("model.model.pixel_level_module.decoder") for n in changed)
    assert any(n.startswith("model.model.transformer_module") for n in changed)
    assert any(n.startswith("model.class_predictor") for n in changed)
    assert any(n.startswith("head.") for n in changed)


def test_mask2former_without_input_size_resizes_as_its_processor(mask2former_dir):
    teacher = HFUniversalTeacher.from_pretrained(str(mask2former_dir), CLASSES, proj_dim=8).eval()
    assert teacher.resize == {"height": 64, "width": 96}
    mean = torch.tensor(PROCESSOR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PROCESSOR_STD).view(1, 3, 1, 1)
    images = torch.rand(1, 3, 30, 50, generator=torch.Generator().manual_seed(3))
    pixels = F.interpolate((images - mean) / std, size=(64, 96), mode="bilinear", antialias=True)
    with torch.no_grad():
        torch.testing.assert_close(
            teacher(images).mask_logits, teacher.model(pixel_values=pixels).masks_queries_logits
        )
    # shortest / longest edge: 30 × 50 → 48 × 80 (aspect kept), padded to 64 × 96
    edges = HFUniversalTeacher(
        teacher.model,
        CLASSES,
        teacher.label_ids,
        normalisation=teacher.normalisation,
        resize={"shortest_edge": 48, "longest_edge": 80},
    ).eval()
    fitted = F.interpolate((images - mean) / std, size=(48, 80), mode="bilinear", antialias=True)
    canvas = torch.zeros(1, 3, 64, 96)
    canvas[..., :48, :80] = fitted
    with torch.no_grad():
        pred = edges(images)
        raw = teacher.model(pixel_values=canvas).masks_queries_logits
    assert pred.mask_logits.shape == (1, 5, 12, 20)
    torch.testing.assert_close(pred.mask_logits, raw[..., :12, :20])
    with pytest.raises(ValueError, match="shortest_edge"):
        HFUniversalTeacher(teacher.model, CLASSES, teacher.label_ids, resize={"longest_edge": 9})
