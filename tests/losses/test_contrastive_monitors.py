"""FNR and empirical margin on constructed cases with known answers."""

import math

import torch

from castseg.losses.contrastive import instance_id_map, sampling_monitors
from castseg.structures import Instances


def test_known_false_negative_rate_and_margin():
    ids = torch.tensor([[1, 1, 2, 2], [1, 1, 0, 0]])
    # Anchor 0 (image 0, instance 1): negatives 1 (same instance), 2, 4 (other image's id 1), 6.
    negatives = torch.tensor(
        [
            [[1, 2, 4, 6], [0, 0, 3, 5], [3, 0, 1, 7], [2, 2, 2, 2]],
            [[5, 0, 1, 2], [4, 6, 7, 3], [7, 7, 0, 4], [6, 6, 6, 6]],
        ]
    )
    same = [1, 2, 1, 4, 1, 1, 2, 4]  # false negatives per anchor, counted by hand
    z = torch.eye(8).reshape(2, 4, 8)
    out = sampling_monitors(ids, negatives, z, z)
    assert math.isclose(out["fnr"], sum(same) / 32, abs_tol=1e-6)
    # Orthogonal one-hot embeddings: distance 1 to every other pixel, 0 to the positive.
    assert math.isclose(out["pos_distance"], 0.0, abs_tol=1e-6)
    assert math.isclose(out["neg_distance"], 1.0, abs_tol=1e-6)
    assert math.isclose(out["margin"], 1.0, abs_tol=1e-6)


def test_ignored_and_invalid_anchors_are_skipped():
    ids = torch.tensor([[1, 1, -1, 2]])
    negatives = torch.tensor([[[1], [0], [1], [0]]])
    z = torch.randn(1, 4, 3)
    assert math.isclose(sampling_monitors(ids, negatives, z, z)["fnr"], 2 / 3, rel_tol=1e-6)
    valid = torch.tensor([[True, False, True, True]])
    assert math.isclose(sampling_monitors(ids, negatives, z, z, valid)["fnr"], 1 / 2)
    none = sampling_monitors(ids, negatives, z, z, torch.zeros(1, 4, dtype=torch.bool))
    assert math.isnan(none["fnr"])


def test_instance_id_map_downsamples_masks():
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :4, :4] = True
    masks[1, 4:, 4:] = True
    ignore = torch.zeros(8, 8, dtype=torch.bool)
    ignore[:2, 6:] = True
    ids = instance_id_map([Instances(masks, torch.tensor([0, 1]), ignore=ignore)], (4, 4))
    expected = torch.tensor([[1, 1, 0, -1], [1, 1, 0, 0], [0, 0, 2, 2], [0, 0, 2, 2]])
    assert torch.equal(ids, expected.flatten()[None])
