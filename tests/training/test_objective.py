"""J applies the config's weights in one place and the stage's λ's exactly."""

import pytest
import torch

from castseg.config import LossConfig
from castseg.training.objective import StageWeights, cast_objective, set_loss


def test_set_loss_weights_every_layer():
    terms = {
        "loss_class": torch.tensor(1.0),
        "loss_mask": torch.tensor(2.0),
        "loss_dice": torch.tensor(3.0),
        "loss_class_0": torch.tensor(10.0),
        "loss_mask_0": torch.tensor(20.0),
        "loss_dice_0": torch.tensor(30.0),
    }
    weights = LossConfig(class_weight=2.0, mask_weight=5.0, dice_weight=7.0)
    expected = 2 * 1 + 5 * 2 + 7 * 3 + 2 * 10 + 5 * 20 + 7 * 30
    assert float(set_loss(terms, weights)) == pytest.approx(expected)


def test_set_loss_rejects_unknown_terms():
    with pytest.raises(ValueError, match="loss_box"):
        set_loss({"loss_box": torch.tensor(1.0)}, LossConfig())


def test_objective_is_sup_plus_weighted_terms():
    sup, semi, pxl = torch.tensor(1.5), torch.tensor(4.0), torch.tensor(2.0)
    total = cast_objective(sup, semi, pxl, StageWeights(lambda_semi=0.5, lambda_pxl=0.2))
    assert float(total) == pytest.approx(1.5 + 0.5 * 4.0 + 0.2 * 2.0)
    assert float(cast_objective(sup, None, None, StageWeights(1.0, 1.0))) == 1.5
    assert float(cast_objective(sup, semi, pxl, StageWeights(0.0, 0.0))) == 1.5
