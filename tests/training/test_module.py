"""One training step of J on a tiny student: every term, the monitors, gradients."""

import torch

from castseg.config import ContrastiveConfig, LossConfig
from castseg.models.student import build_student
from castseg.structures import Instances
from castseg.training.batches import ViewBatch
from castseg.training.module import CastModule
from castseg.training.objective import StageWeights
from castseg.training.optim import OptimSettings


def batch(n, seed):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 56, 56, generator=g)
    targets = []
    for i in range(n):
        masks = torch.zeros(2, 56, 56, dtype=torch.bool)
        masks[0, 5:25, 5:25] = True
        masks[1, 30:50, 20 + i : 45 + i] = True
        targets.append(Instances(masks, torch.tensor([0, 2])))
    return ViewBatch(images, targets)


def module(weights, contrastive=None):
    torch.manual_seed(0)
    model = build_student("tiny", num_classes=3)
    settings = OptimSettings(
        lr={"encoder": 1e-4, "decoder": 1e-4}, weight_decay=0.0, betas=(0.9, 0.999), schedule="poly"
    )
    return CastModule(
        model,
        num_classes=3,
        loss=LossConfig(num_points=64),
        contrastive=contrastive or ContrastiveConfig(num_negatives=8),
        weights=weights,
        optim=settings,
        steps=10,
    )


def logged(m):
    values = {}
    m.log = lambda name, value, **_: values.__setitem__(
        name, float(torch.as_tensor(value).detach())
    )
    m.optimizers = lambda: m.configure_optimizers()["optimizer"]
    return values


def test_step_combines_all_terms_and_reaches_every_part():
    m = module(StageWeights(lambda_semi=1.0, lambda_pxl=0.2))
    values = logged(m)
    loss = m.training_step({"labeled": batch(2, 0), "unlabeled": batch(2, 1)}, 0)
    expected = values["train/l_sup"] + values["train/l_semi"] + 0.2 * values["train/l_pxl"]
    assert abs(loss.item() - expected) < 1e-4
    assert 0.0 <= values["train/fnr"] <= 1.0 and "train/margin" in values
    loss.backward()
    for part in (m.model.encoder, m.model.decoder, m.model.head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_memory_bank_fills_adds_negatives_and_survives_a_checkpoint():
    m = module(StageWeights(0.0, 0.2), ContrastiveConfig(num_negatives=8, memory_bank=50))
    values = logged(m)
    m.training_step({"labeled": batch(2, 0)}, 0)
    bank = m.memory_bank
    first = len(bank)
    assert 0 < first <= 32  # the valid anchors of 2 images x 4 x 4 patches
    loss = m.training_step({"labeled": batch(2, 1)}, 1)
    assert torch.isfinite(loss) and 0.0 <= values["train/fnr"] <= 1.0
    assert first < len(bank) <= 50
    checkpoint = {}
    m.on_save_checkpoint(checkpoint)
    restored = module(StageWeights(0.0, 0.2), ContrastiveConfig(num_negatives=8, memory_bank=50))
    restored.on_load_checkpoint(checkpoint)
    assert torch.equal(restored.memory_bank.keys, bank.keys)
    assert torch.equal(restored.memory_bank.probs, bank.probs)


def test_refinement_step_has_only_the_supervised_term():
    m = module(StageWeights(0.0, 0.0))
    values = logged(m)
    loss = m.training_step({"labeled": batch(2, 0)}, 0)
    assert set(values) == {"train/loss", "train/l_sup", "train/lr"}
    assert abs(loss.item() - values["train/l_sup"]) < 1e-5
    assert m.model.head.parameters().__next__().grad is None


def test_non_finite_loss_skips_the_step():
    m = module(StageWeights(0.0, 0.0))
    logged(m)
    with torch.no_grad():
        next(m.model.decoder.parameters()).fill_(float("nan"))
    assert m.training_step({"labeled": batch(1, 0)}, 0) is None
    assert (m.skipped_steps, m.nonfinite_streak, m.last_finite_step) == (1, 1, 0)


def test_non_finite_gradients_are_dropped_and_a_finite_step_ends_the_streak():
    m = module(StageWeights(0.0, 0.0))
    logged(m)
    optimizer = m.optimizers()
    m.training_step({"labeled": batch(1, 0)}, 0).backward()
    next(p for p in m.model.parameters() if p.grad is not None).grad.view(-1)[0] = float("inf")
    m.on_before_optimizer_step(optimizer)
    assert all(p.grad is None for p in m.model.parameters())
    assert (m.skipped_steps, m.nonfinite_streak, m.last_finite_step) == (1, 1, 0)

    m.training_step({"labeled": batch(1, 0)}, 0).backward()
    m.on_before_optimizer_step(optimizer)
    assert any(p.grad is not None for p in m.model.parameters())
    assert (m.skipped_steps, m.nonfinite_streak, m.last_finite_step) == (1, 0, 1)
