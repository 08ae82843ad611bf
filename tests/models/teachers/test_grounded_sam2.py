"""GroundedSAM2Teacher on tiny random MM-Grounding-DINO and SAM2 models in local directories."""

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, Sam2VideoModel

from castseg.data.coco import CategoryMap
from castseg.models.checkpoints import load_checkpoint, save_checkpoint
from castseg.models.registry import build_model
from castseg.models.teachers.grounded_sam2 import GroundedSAM2Teacher
from castseg.models.teachers.grounded_sam2_detector import class_logits_from_scores
from castseg.models.teachers.grounded_sam2_parts import (
    DEFAULT_TRAINABLE,
    PARTS,
    parameters_by_part,
)

CLASSES = ["person", "motorcycle", "traffic_light"]
# The tiny processors' settings (see conftest): detector shortest edge 48, longest 80.
DETECTOR_MEAN, DETECTOR_STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
SEGMENTER_MEAN, SEGMENTER_STD = [0.45, 0.5, 0.55], [0.3, 0.2, 0.1]


def load(detector_dir, segmenter_dir, **kwargs) -> GroundedSAM2Teacher:
    kwargs = {"num_boxes": 5, "proj_dim": 8} | kwargs
    return GroundedSAM2Teacher.from_pretrained(
        str(detector_dir), str(segmenter_dir), CLASSES, **kwargs
    )


def images(batch=2, height=40, width=72, seed=0):
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def normalised(x, size, mean, std):
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_forward_returns_predictions_of_the_expected_shapes(tiny_detector_dir, tiny_segmenter_dir):
    teacher = load(tiny_detector_dir, tiny_segmenter_dir)
    pred = teacher(images())
    assert pred.mask_logits.shape == (2, 5, 16, 16)  # SAM2 low-res masks: 64 / 4
    assert pred.class_logits.shape == (2, 5, 4)
    assert pred.embeddings.shape == (2, 8, 4, 4)  # SAM2 image embeddings: 64 / 16
    assert pred.aux == []
    for tensor in (pred.mask_logits, pred.class_logits, pred.embeddings):
        assert torch.isfinite(tensor).all()
    torch.testing.assert_close(pred.embeddings.norm(dim=1), torch.ones(2, 4, 4))


def test_outputs_match_the_detector_and_segmenter_run_by_hand(
    tiny_detector_dir, tiny_segmenter_dir, tiny_tokenizer_dir
):
    teacher = load(tiny_detector_dir, tiny_segmenter_dir).eval()
    x = images()
    with torch.no_grad():
        pred = teacher(x)
        # The detector's processor would resize 40 × 72 to shortest edge 48 unless the longest
        # edge exceeds 80: 80 · 40 / 72 = 44.4 → 44 × 80.
        tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
        text = tokenizer("person. motorcycle. traffic light.", return_tensors="pt")
        detected = teacher.detector(
            pixel_values=normalised(x, (44, 80), DETECTOR_MEAN, DETECTOR_STD),
            input_ids=text["input_ids"].expand(2, -1),
            attention_mask=text["attention_mask"].expand(2, -1),
        )
        probs = detected.logits.sigmoid()
        # [CLS] person . motor ##cycle . traffic light . [SEP]
        scores = torch.stack(
            [probs[..., [1]].mean(-1), probs[..., [3, 4]].mean(-1), probs[..., [6, 7]].mean(-1)],
            dim=-1,
        )  # [B, Q, 3]
        top = scores.max(-1).values.topk(5, dim=1).indices
        top_scores = torch.stack([scores[b, top[b]] for b in range(2)])
        foreground = top_scores.max(-1, keepdim=True).values
        expected = torch.cat(
            [foreground * top_scores / top_scores.sum(-1, keepdim=True), 1 - foreground], dim=-1
        )
        torch.testing.assert_close(pred.class_logits.softmax(-1), expected, atol=1e-5, rtol=1e-4)

        boxes = torch.stack([detected.pred_boxes[b, top[b]] for b in range(2)])  # cx, cy, w, h
        corners = torch.cat(
            [boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], -1
        )
        segmented = teacher.segmenter(
            pixel_values=normalised(x, (64, 64), SEGMENTER_MEAN, SEGMENTER_STD),
            input_boxes=corners.clamp(0, 1) * 64,
            multimask_output=False,
        )
    torch.testing.assert_close(pred.mask_logits, segmented.pred_masks[:, :, 0])


def test_class_distribution_from_detector_scores():
    scores = torch.tensor(
        [
            [1e-4, 2e-4, 1e-4],  # nothing there
            [0.9, 0.01, 0.01],  # a confident class 0
            [0.6, 0.6, 0.0],  # two classes tied
        ]
    )
    probs = class_logits_from_scores(scores).softmax(-1)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))
    assert probs[0, -1] > 0.999
    torch.testing.assert_close(
        probs[1],
        torch.tensor([0.9 * 0.9 / 0.92, 0.9 * 0.01 / 0.92, 0.009 / 0.92, 0.1]),
        atol=1e-5,
        rtol=0,
    )
    torch.testing.assert_close(probs[2], torch.tensor([0.3, 0.3, 0.0, 0.4]), atol=1e-5, rtol=0)


def test_a_checkpoint_rebuilds_the_same_model(tiny_detector_dir, tiny_segmenter_dir, tmp_path):
    teacher = load(tiny_detector_dir, tiny_segmenter_dir, trainable=["segmenter_mask_decoder"])
    config = json.loads(json.dumps(teacher.config_dict()))
    assert config["architecture"] == "grounded_sam2"
    assert config["num_classes"] == 3 and config["class_names"] == CLASSES
    assert config["prompts"] == ["person", "motorcycle", "traffic light"]
    assert config["text_length"] == 10 and config["segmenter_size"] == 64
    assert config["normalisation"]["segmenter"] == {"mean": SEGMENTER_MEAN, "std": SEGMENTER_STD}

    rebuilt = build_model(config)  # random weights, zero prompt tokens
    assert rebuilt.trainable == ("segmenter_mask_decoder",)
    assert rebuilt.input_ids.shape == teacher.input_ids.shape
    assert not torch.equal(rebuilt.input_ids, teacher.input_ids)

    categories = CategoryMap.from_categories(
        [{"id": 10 + i, "name": name} for i, name in enumerate(CLASSES)]
    )
    path = save_checkpoint(
        tmp_path / "teacher.pt", teacher, category_map=categories, image_size=(40, 72)
    )
    loaded = load_checkpoint(path).model  # rebuilt by the registry from config_dict()
    x = images(seed=3)
    with torch.no_grad():
        expected, got = teacher.eval()(x), loaded(x)
    for name in ("mask_logits", "class_logits", "embeddings"):
        assert torch.equal(getattr(expected, name), getattr(got, name)), name


def test_default_trainable_parts_and_parameter_groups(tiny_detector_dir, tiny_segmenter_dir):
    teacher = load(tiny_detector_dir, tiny_segmenter_dir)
    parts = parameters_by_part(teacher)
    unique = {id(p) for p in teacher.parameters()}
    assert sum(len(ps) for ps in parts.values()) == len(unique)  # every parameter in one part
    assert (
        all(parts[part] for part in PARTS if part != "detector_decoder")
        and parts["detector_decoder"]
    )
    for part, parameters in parts.items():
        assert all(p.requires_grad == (part in DEFAULT_TRAINABLE) for p in parameters), part

    groups = teacher.parameter_groups()
    encoder, decoder = {id(p) for p in groups["encoder"]}, {id(p) for p in groups["decoder"]}
    assert encoder | decoder == unique and not encoder & decoder
    assert not any(p.requires_grad for p in groups["encoder"])
    assert all(p.requires_grad for p in groups["decoder"])

    teacher.train()
    assert not teacher.detector.model.text_backbone.training
    assert not teacher.detector.model.backbone.training
    assert not teacher.segmenter.vision_encoder.training
    assert teacher.detector.model.decoder.training and teacher.segmenter.mask_decoder.training
    assert not teacher.eval().head.training


def test_custom_trainable_parts(tiny_detector_dir, tiny_segmenter_dir):
    teacher = load(
        tiny_detector_dir,
        tiny_segmenter_dir,
        trainable=["detector_text_encoder", "projection_head"],
    )
    trainable = {id(p) for p in teacher.parameters() if p.requires_grad}
    expected = parameters_by_part(teacher)
    assert trainable == {
        id(p) for part in ("detector_text_encoder", "projection_head") for p in expected[part]
    }
    assert teacher.train().detector.model.text_backbone.training
    assert not teacher.segmenter.mask_decoder.training


def test_unknown_trainable_part_lists_the_known_ones(tiny_detector_dir, tiny_segmenter_dir):
    with pytest.raises(
        ValueError, match=r"unknown teacher parts \['decoder'\].*detector_text_encoder"
    ):
        load(tiny_detector_dir, tiny_segmenter_dir, trainable=["decoder"])


def test_segmenter_input_size_is_configurable(tiny_detector_dir, tiny_segmenter_dir):
    teacher = load(
        tiny_detector_dir, tiny_segmenter_dir, segmenter_size=128, detector_size=(56, 96)
    )
    assert teacher.detector_size == (56, 96)
    pred = teacher(images(batch=1))
    assert pred.mask_logits.shape == (1, 5, 32, 32) and pred.embeddings.shape == (1, 8, 8, 8)
    with pytest.raises(ValueError, match="positive multiple of 16, got 100"):
        load(tiny_detector_dir, tiny_segmenter_dir, segmenter_size=100)


def test_more_boxes_than_detector_queries_is_an_error(tiny_detector_dir, tiny_segmenter_dir):
    with pytest.raises(ValueError, match="num_boxes must be between 1 and the detector's 12"):
        load(tiny_detector_dir, tiny_segmenter_dir, num_boxes=13)


def test_loading_errors_name_the_source(tiny_detector_dir, tiny_segmenter_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"detector directory .*missing.* does not exist"):
        load(tmp_path / "missing", tiny_segmenter_dir)
    with pytest.raises(ValueError, match=r"segmenter .* is not a model directory"):
        load(tiny_detector_dir, tmp_path)
    with pytest.raises(ValueError, match="is a 'sam2_video' model, expected 'mm-grounding-dino'"):
        load(tiny_segmenter_dir, tiny_segmenter_dir)
    with pytest.raises(ValueError, match="is a 'mm-grounding-dino' model, expected 'sam2' or"):
        load(tiny_detector_dir, tiny_detector_dir)


def test_a_published_sam2_video_checkpoint_loads_its_image_model(
    tiny_detector_dir, tiny_segmenter_dir, caplog
):
    # The fixture is laid out like facebook/sam2.1-hiera-large (see conftest).
    published = json.loads((tiny_segmenter_dir / "config.json").read_text())
    assert published["model_type"] == "sam2_video"
    assert published["architectures"] == ["Sam2VideoModel"]
    with caplog.at_level("INFO", logger="castseg.models.teachers.sources"):
        teacher = load(tiny_detector_dir, tiny_segmenter_dir)
    assert "video memory weights" in caplog.text
    video = Sam2VideoModel.from_pretrained(tiny_segmenter_dir).state_dict()
    image = teacher.segmenter.state_dict()
    assert set(image) < set(video)  # the image path only: no memory modules
    assert any(key.startswith("memory_attention.") for key in set(video) - set(image))
    for key, value in image.items():
        assert torch.equal(value, video[key]), key


def test_embed_equals_the_forward_embeddings_and_trains_the_head(
    tiny_detector_dir, tiny_segmenter_dir
):
    teacher = load(tiny_detector_dir, tiny_segmenter_dir).eval()
    images = torch.rand(2, 3, 56, 84, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(teacher.embed(images), teacher(images).embeddings)
    teacher.embed(images).sum().backward()
    assert all(p.grad is not None for p in teacher.head.parameters())
    assert all(p.grad is None for p in teacher.detector.parameters())


def test_train_and_eval_mode_give_the_same_masks(tiny_detector_dir, tiny_segmenter_dir):
    # SAM2.1's dynamic_multimask_via_stability (on in the fixture, as published) would swap
    # unstable token-0 masks for another token's in eval mode only: pseudo-labels and
    # evaluation would then see masks that training never produced.
    teacher = load(tiny_detector_dir, tiny_segmenter_dir)
    x = images(seed=5)
    teacher.train()
    teacher.detector.eval()  # dropout off (the detector's decoder is the part that has dropout)
    assert teacher.segmenter.mask_decoder.training
    with torch.no_grad():
        trained = teacher(x).mask_logits
        evaluated = teacher.eval()(x).mask_logits
    assert torch.equal(trained, evaluated)


def test_masks_decoded_in_checkpointed_chunks_equal_one_call(tiny_detector_dir, tiny_segmenter_dir):
    whole = load(tiny_detector_dir, tiny_segmenter_dir, mask_chunk=10)
    # a batch of 2 images, 4 pairs a call: boxes in chunks of 2, 2, 1
    chunked = load(tiny_detector_dir, tiny_segmenter_dir, mask_chunk=4)
    chunked.load_state_dict(whole.state_dict())
    x = images(seed=6)
    grads = []
    for teacher in (whole, chunked):
        teacher.train()
        teacher.detector.eval()
        pred = teacher(x)
        (
            pred.mask_logits
            * torch.linspace(-1, 1, pred.mask_logits.numel()).view_as(pred.mask_logits)
        ).sum().backward()
        grads.append(
            (pred.mask_logits.detach(), teacher.segmenter.mask_decoder.upscale_conv1.weight.grad)
        )
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])
    with pytest.raises(ValueError, match="mask_chunk must be a positive"):
        load(tiny_detector_dir, tiny_segmenter_dir, mask_chunk=0)


def test_a_batch_taken_image_by_image_equals_one_pass(tiny_detector_dir, tiny_segmenter_dir):
    # image_chunk bounds the frozen encoders' transient activations to one image's (module doc).
    together = load(tiny_detector_dir, tiny_segmenter_dir, image_chunk=3)
    alone = load(tiny_detector_dir, tiny_segmenter_dir)
    assert alone.image_chunk == 1 and alone.config_dict()["image_chunk"] == 1
    alone.load_state_dict(together.state_dict())
    x = images(batch=3, seed=7)
    outputs = []
    for teacher in (together, alone):
        teacher.train()
        teacher.detector.eval()
        pred = teacher(x)
        strong = teacher.embed(x.flip(-1))
        (pred.mask_logits.sum() + pred.class_logits.sum() + strong.sum()).backward()
        outputs.append(
            (pred, strong, teacher.segmenter.mask_decoder.upscale_conv1.weight.grad.clone())
        )
    (pred_a, strong_a, grad_a), (pred_b, strong_b, grad_b) = outputs
    for name in ("mask_logits", "class_logits", "embeddings", "boxes"):
        torch.testing.assert_close(getattr(pred_a, name), getattr(pred_b, name))
    torch.testing.assert_close(strong_a, strong_b)
    torch.testing.assert_close(grad_a, grad_b)
    with pytest.raises(ValueError, match="image_chunk must be a positive"):
        load(tiny_detector_dir, tiny_segmenter_dir, image_chunk=0)


def test_a_bf16_checkpoint_loads_in_float32(tiny_detector_dir, tiny_segmenter_dir, tmp_path):
    # Hub copies are often saved in bf16; a teacher in bf16 would meet float32 pixels.
    half = tmp_path / "sam2_bf16"
    Sam2VideoModel.from_pretrained(tiny_segmenter_dir).to(torch.bfloat16).save_pretrained(half)
    for name in ("processor_config.json", "preprocessor_config.json"):
        (half / name).write_text((tiny_segmenter_dir / name).read_text())
    assert json.loads((half / "config.json").read_text())["dtype"] == "bfloat16"
    teacher = load(tiny_detector_dir, half)
    assert {p.dtype for p in teacher.parameters()} == {torch.float32}
    assert torch.isfinite(teacher(images(batch=1)).mask_logits).all()


def test_classes_beyond_the_detector_text_run_in_chunks(
    tiny_detector_dir, tiny_segmenter_dir, tiny_tokenizer_dir
):
    # 14 classes whose prompt is 36 tokens, the tiny detector reads 32: two texts, two runs,
    # the queries of both compete for the top boxes (as MM-Grounding-DINO runs LVIS).
    prompts = ["person", "rider", "car", "motor", "bi", "traffic", "light", "bus"] + [
        "person rider",
        "car bus",
        "traffic light",
        "motor bi",
        "rider car",
        "bus light",
    ]
    names = [p.replace(" ", "_") for p in prompts]
    teacher = GroundedSAM2Teacher.from_pretrained(
        str(tiny_detector_dir), str(tiny_segmenter_dir), names, num_boxes=6, proj_dim=8
    ).eval()
    assert len(teacher.prompt_chunks) == 2 and sum(teacher.prompt_chunks) == 14
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    x = images(seed=8)
    with torch.no_grad():
        pred = teacher(x)
        pixels = normalised(x, (44, 80), DETECTOR_MEAN, DETECTOR_STD)
        scores, first = [], 0
        for size in teacher.prompt_chunks:
            chunk = prompts[first : first + size]
            text = tokenizer(". ".join(chunk) + ".", return_offsets_mapping=True)
            detected = teacher.detector(
                pixel_values=pixels,
                input_ids=torch.tensor([text["input_ids"]]).expand(2, -1),
                attention_mask=torch.ones(2, len(text["input_ids"]), dtype=torch.long),
            )
            probs = detected.logits.sigmoid()
            chunk_scores = torch.zeros(2, probs.shape[1], 14)
            offset = 0
            for c, prompt in enumerate(chunk):  # the tokens whose characters lie in the phrase
                tokens = [
                    t
                    for t, (a, b) in enumerate(text["offset_mapping"])
                    if b > a and offset <= a and b <= offset + len(prompt)
                ]
                chunk_scores[..., first + c] = probs[..., tokens].mean(-1)
                offset += len(prompt) + 2
            scores.append(chunk_scores)
            first += size
        scores = torch.cat(scores, dim=1)  # [2, 2 · 12 queries, 14]
        top = scores.max(-1).values.topk(6, dim=1).indices
        expected = class_logits_from_scores(torch.stack([scores[b, top[b]] for b in range(2)]))
    torch.testing.assert_close(pred.class_logits, expected, atol=1e-5, rtol=1e-4)

    rebuilt = build_model(json.loads(json.dumps(teacher.config_dict())))
    rebuilt.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x).class_logits, pred.class_logits)
