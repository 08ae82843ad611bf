import pytest
import torch

from castseg.losses.point_sampling import (
    point_sample,
    sample_uncertain_points,
    valid_point_weights,
)


def pixel_centres(height: int, width: int) -> torch.Tensor:
    """[H * W, 2] (x, y) coordinates of every pixel centre, row-major."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([(xs + 0.5) / width, (ys + 0.5) / height], -1).reshape(-1, 2).float()


def test_point_sample_reads_pixel_centres_exactly():
    inputs = torch.randn(2, 3, 5, 7)
    coords = pixel_centres(5, 7)[None].expand(2, -1, -1)
    out = point_sample(inputs, coords)
    assert out.shape == (2, 3, 35)
    torch.testing.assert_close(out, inputs.flatten(2))


def test_point_sample_interpolates_between_centres_and_clamps_at_edges():
    inputs = torch.tensor([[[[0.0, 4.0]]]])  # [1, 1, 1, 2]
    coords = torch.tensor([[[0.5, 0.5], [0.0, 0.5], [1.0, 0.5]]])
    torch.testing.assert_close(point_sample(inputs, coords), torch.tensor([[[2.0, 0.0, 4.0]]]))


def test_point_sample_rejects_bad_shapes():
    with pytest.raises(ValueError, match="coords"):
        point_sample(torch.zeros(1, 1, 4, 4), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="disagree on N"):
        point_sample(torch.zeros(2, 1, 4, 4), torch.zeros(1, 3, 2))


def test_points_touching_crowd_pixels_get_zero_weight():
    ignore = torch.zeros(4, 4, dtype=torch.bool)
    ignore[0, 0] = True
    # Centre of the crowd pixel, halfway to its neighbour, centre of the neighbour, far corner.
    coords = torch.tensor([[[0.125, 0.125], [0.25, 0.125], [0.375, 0.125], [0.9, 0.9]]])
    assert valid_point_weights(ignore, coords).tolist() == [[0.0, 0.0, 1.0, 1.0]]
    assert valid_point_weights(None, coords).tolist() == [[1.0] * 4]


def test_uncertain_points_prefer_small_logits():
    # Left half of the mask is undecided (logit 0), right half confident.
    logits = torch.full((2, 1, 8, 8), 50.0)
    logits[..., :4] = 0.0
    generator = torch.Generator().manual_seed(0)
    coords = sample_uncertain_points(logits, 64, importance_sample_ratio=0.5, generator=generator)
    assert coords.shape == (2, 64, 2)
    assert coords.min() >= 0 and coords.max() <= 1
    assert (coords[:, :32, 0] < 0.5).all()
    # The random half still reaches the confident region.
    assert (coords[:, 32:, 0] > 0.5).any()


def test_uncertain_points_are_reproducible_with_a_generator():
    logits = torch.randn(3, 1, 6, 6)
    a = sample_uncertain_points(logits, 20, generator=torch.Generator().manual_seed(1))
    b = sample_uncertain_points(logits, 20, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)


def test_uncertain_points_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"\[N, 1, h, w\]"):
        sample_uncertain_points(torch.zeros(2, 3, 4, 4), 8)
    with pytest.raises(ValueError, match="importance_sample_ratio"):
        sample_uncertain_points(torch.zeros(2, 1, 4, 4), 8, importance_sample_ratio=1.5)
