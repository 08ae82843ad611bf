"""The tiny GroundedSAM2 teacher in stage 1 (one step of J) and as a pseudo-labeller."""

import numpy as np
import torch
from PIL import Image

from castseg.config import ContrastiveConfig, LossConfig
from castseg.data.coco import UnlabeledImageDataset
from castseg.data.synthetic import render_scene
from castseg.models.teachers.grounded_sam2 import GroundedSAM2Teacher
from castseg.models.teachers.grounded_sam2_parts import DEFAULT_TRAINABLE, part_of
from castseg.pipeline.pseudo_labels import generate_pseudo_labels
from castseg.structures import Instances
from castseg.training.batches import ViewBatch
from castseg.training.module import CastModule
from castseg.training.objective import StageWeights
from castseg.training.optim import OptimSettings

CLASSES = ["person", "motorcycle", "traffic_light"]


def load(detector_dir, segmenter_dir) -> GroundedSAM2Teacher:
    return GroundedSAM2Teacher.from_pretrained(
        str(detector_dir), str(segmenter_dir), CLASSES, num_boxes=6, proj_dim=8
    )


def batch(n, seed):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 48, 64, generator=g)
    targets = []
    for i in range(n):
        masks = torch.zeros(2, 48, 64, dtype=torch.bool)
        masks[0, 4:24, 6:30] = True
        masks[1, 26:44, 30 + i : 60] = True
        targets.append(Instances(masks, torch.tensor([0, 2])))
    return ViewBatch(images, targets)


def test_one_step_of_the_objective_changes_only_trainable_parameters(
    tiny_detector_dir, tiny_segmenter_dir
):
    torch.manual_seed(0)
    teacher = load(tiny_detector_dir, tiny_segmenter_dir)
    module = CastModule(
        teacher,
        num_classes=3,
        loss=LossConfig(num_points=32),
        contrastive=ContrastiveConfig(num_negatives=8),
        weights=StageWeights(lambda_semi=1.0, lambda_pxl=0.2),
        optim=OptimSettings(
            lr={"encoder": 1e-2, "decoder": 1e-2},
            weight_decay=0.0,
            betas=(0.9, 0.999),
            schedule="multistep",
            milestones=(0.9,),
        ),
        steps=10,
    )
    optimizer = module.configure_optimizers()["optimizer"]
    module.log = lambda *args, **kwargs: None
    module.optimizers = lambda: optimizer
    before = {name: p.detach().clone() for name, p in teacher.named_parameters()}

    loss = module.training_step({"labeled": batch(2, 0), "unlabeled": batch(2, 1)}, 0)
    assert torch.isfinite(loss)
    loss.backward()
    optimizer.step()

    changed = {n for n, p in teacher.named_parameters() if not torch.equal(p, before[n])}
    frozen = {n for n, p in teacher.named_parameters() if not p.requires_grad}
    assert frozen and not changed & frozen
    assert {part_of(name) for name in changed} == set(DEFAULT_TRAINABLE)
    # the box L1 + GIoU reach the detector's box regression
    assert any("bbox_embed" in name for name in changed), sorted(changed)


def test_pseudo_labels_of_synthetic_images(tiny_detector_dir, tiny_segmenter_dir, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "unlabeled"
    folder.mkdir()
    for index in range(2):
        image, _, _ = render_scene(rng, (56, 72), "target")
        Image.fromarray(image).save(folder / f"scene_{index}.png")
    teacher = load(tiny_detector_dir, tiny_segmenter_dir)
    dataset = UnlabeledImageDataset(folder)

    cache = generate_pseudo_labels(
        teacher,
        dataset,
        tmp_path / "pseudo.jsonl",
        image_size=(48, 64),
        threshold=0.0,
        nms_iou=None,
        top_k=6,
        batch_size=2,
        fingerprint={"teacher": "tiny random grounded_sam2"},
        progress=False,
    )

    assert cache.image_ids == [0, 1] and cache.num_classes == 3
    assert teacher.training  # predict_images restores the mode it found
    found = [cache.instances(i) for i in cache.image_ids]
    assert sum(len(instances) for instances in found) > 0
    for instances in found:
        assert instances.image_size == (56, 72)
        assert len(instances) <= 6
        assert instances.class_probs.shape == (len(instances), 4)
        torch.testing.assert_close(
            instances.class_probs.sum(-1), torch.ones(len(instances)), atol=1e-4, rtol=0
        )
        assert torch.equal(instances.labels, instances.class_probs[:, :3].argmax(-1))


def test_one_step_on_l_pxl_alone_changes_the_teacher_masks(tiny_detector_dir, tiny_segmenter_dir):
    # The embeddings sit on SAM2's trainable FPN neck, which the mask decoder reads: the
    # contrastive term alone must move the masks (with a head on frozen features it could not).
    torch.manual_seed(0)
    teacher = load(tiny_detector_dir, tiny_segmenter_dir)
    module = CastModule(
        teacher,
        num_classes=3,
        loss=LossConfig(num_points=32),
        contrastive=ContrastiveConfig(num_negatives=8),
        weights=StageWeights(lambda_semi=0.0, lambda_pxl=0.2),
        optim=OptimSettings(
            lr={"encoder": 1e-2, "decoder": 1e-2},
            weight_decay=0.0,
            betas=(0.9, 0.999),
            schedule="multistep",
            milestones=(0.9,),
        ),
        steps=10,
    )
    module.log = lambda *args, **kwargs: None
    optimizer = module.configure_optimizers()["optimizer"]
    views = batch(2, 0)
    probe = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        before = teacher.eval()(probe).mask_logits
    teacher.train()
    l_pxl = module.pixel_term(views.images, teacher(views.images), views.targets)
    assert torch.isfinite(l_pxl)
    l_pxl.backward()
    # the stride-16 map's lateral and top-down convolutions (not those of strides 4 and 8)
    neck = [p.grad for p in teacher.segmenter.vision_encoder.neck.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in neck)
    assert all(p.grad is None for p in teacher.segmenter.mask_decoder.parameters())
    optimizer.step()
    with torch.no_grad():
        after = teacher.eval()(probe).mask_logits
    # the random tiny SAM2's logits are ~1e-5: compare the change with their own scale
    assert (after - before).abs().max() > 0.1 * before.abs().max()
