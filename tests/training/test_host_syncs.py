"""Host syncs of one student training step do not grow with the image size (issue: a paper-size
step made 23,000 `.item()` calls). Counted on CPU with a TorchDispatchMode: a count, not a time."""

import torch
import torch.nn.functional as F

from castseg.config import ContrastiveConfig, LossConfig
from castseg.losses.contrastive import sample_negatives
from castseg.losses.contrastive.sampler import _MAX_ROUNDS
from castseg.models.student import build_student
from castseg.structures import Instances
from castseg.training.batches import ViewBatch
from castseg.training.host_syncs import HostSyncCounter
from castseg.training.module import CastModule
from castseg.training.objective import StageWeights
from castseg.training.optim import OptimSettings


def views(n: int, size: int, seed: int) -> ViewBatch:
    g = torch.Generator().manual_seed(seed)
    targets = []
    for _ in range(n):
        masks = torch.zeros(6, size, size, dtype=torch.bool)
        for k in range(6):
            top, left = k * size // 8, k * size // 12
            masks[k, top : top + size // 4, left : left + size // 3] = True
        targets.append(Instances(masks, torch.randint(0, 3, (6,), generator=g)))
    return ViewBatch(torch.rand(n, 3, size, size, generator=g), targets)


def step_syncs(size: int) -> HostSyncCounter:
    torch.manual_seed(0)
    module = CastModule(
        build_student("tiny", num_classes=3),
        num_classes=3,
        loss=LossConfig(num_points=128),
        contrastive=ContrastiveConfig(num_negatives=32),  # every valid pixel is an anchor
        weights=StageWeights(lambda_semi=1.0, lambda_pxl=0.2),
        optim=OptimSettings(
            lr={"encoder": 1e-4, "decoder": 1e-4},
            weight_decay=0.0,
            betas=(0.9, 0.999),
            schedule="poly",
        ),
        steps=4,
    )
    module.log = lambda *args, **kwargs: None
    optimizer = module.configure_optimizers()["optimizer"]
    module.optimizers = lambda: optimizer
    batch = {"labeled": views(2, size, 0), "unlabeled": views(2, size, 1)}
    # AdamW's own `.item()` calls read its step counters, which live on the CPU also when
    # training on a GPU: the optimizer step is left out of the count.
    with HostSyncCounter() as syncs:
        module.training_step(batch, 0).backward()
        module.on_before_optimizer_step(optimizer)
    return syncs


def test_student_step_syncs_do_not_grow_with_the_image_size():
    small, large = step_syncs(56), step_syncs(112)  # 4x the pixels and anchors
    assert large.total == small.total, (small.by_op, large.by_op)
    # O(images x decoder layers) at most, far below the 4 x 16 x 16 anchors of the large step
    assert large.total < 100, large.by_op


def clustered(pixels: int, seed: int) -> torch.Tensor:
    """ỹ of 4 well-separated instances: most candidates are accepted (rejection path)."""
    g = torch.Generator().manual_seed(seed)
    region = torch.randint(0, 4, (2, pixels), generator=g)
    return F.normalize(F.one_hot(region, 4).float() + 0.05 * torch.rand(2, pixels, 4), dim=-1)


def near_identical(pixels: int) -> torch.Tensor:
    """ỹ of one region: acceptance is near zero, every anchor takes the exact path."""
    return F.normalize(torch.ones(2, pixels, 6) + 1e-3 * torch.rand(2, pixels, 6), dim=-1)


def sampler_syncs(y_tilde: torch.Tensor) -> int:
    with HostSyncCounter() as syncs:
        sample_negatives(y_tilde, 16, generator=torch.Generator().manual_seed(0))
    return syncs.total


def test_sampler_syncs_are_per_round_not_per_anchor():
    for make in (clustered, near_identical):
        small = sampler_syncs(make(200, 0) if make is clustered else make(200))
        large = sampler_syncs(make(3200, 0) if make is clustered else make(3200))
        # A filter per rejection round and one for the exact rows, whatever the pixel count.
        assert small <= 2 * _MAX_ROUNDS + 4 and large <= 2 * _MAX_ROUNDS + 4, (small, large)


def test_the_counter_sees_item_nonzero_and_boolean_indexing():
    x = torch.arange(10.0)
    with HostSyncCounter() as syncs:
        x.sum().item()
        int(x[3])
        x[x > 4].sum()
        (x > 2).nonzero()
        x.masked_fill(x > 4, 0.0)  # no sync: the output size does not depend on the data
    assert syncs.by_op == {
        "aten::_local_scalar_dense": 2,
        "aten::index": 1,
        "aten::nonzero": 1,
    }
