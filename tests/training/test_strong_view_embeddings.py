"""L_pxl's strong view: an `Embedder` computes its embeddings alone, any other model runs whole."""

import torch
from torch import nn

from castseg.config import ContrastiveConfig, LossConfig
from castseg.models.protocol import Embedder
from castseg.models.student import build_student
from castseg.structures import Instances
from castseg.training.module import CastModule
from castseg.training.objective import StageWeights
from castseg.training.optim import OptimSettings


class Whole(nn.Module):
    """The student's forward without its `embed`, counting its calls."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.calls = 0

    def forward(self, images):
        self.calls += 1
        return self.student(images)

    def parameter_groups(self):
        return self.student.parameter_groups()


def pixel_loss(model: nn.Module) -> torch.Tensor:
    module = CastModule(
        model,
        num_classes=3,
        loss=LossConfig(num_points=64),
        contrastive=ContrastiveConfig(num_negatives=8),
        weights=StageWeights(0.0, 0.2),
        optim=OptimSettings(
            lr={"encoder": 1e-4, "decoder": 1e-4},
            weight_decay=0.0,
            betas=(0.9, 0.999),
            schedule="poly",
        ),
        steps=10,
    )
    module.log = lambda *args, **kwargs: None
    images = torch.rand(2, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(1, 56, 56, dtype=torch.bool)
    masks[0, 5:25, 5:25] = True
    targets = [Instances(masks, torch.tensor([1]))] * 2
    with torch.no_grad():
        pred = model(images)
        torch.manual_seed(1)
        return module.pixel_term(images, pred, targets)


def test_a_model_without_embed_gives_the_strong_view_through_forward() -> None:
    torch.manual_seed(0)
    student = build_student("tiny", 3).eval()
    whole = Whole(student)
    assert isinstance(student, Embedder) and not isinstance(whole, Embedder)
    embedded = pixel_loss(student)
    ran_whole = pixel_loss(whole)
    assert whole.calls == 2  # the weak view, then the strong one
    torch.testing.assert_close(ran_whole, embedded)
