import pytest
import torch
import torch.nn.functional as F

from castseg.data.correspondence import correspondence_grid
from castseg.data.views import ResizeView, StrongView, WeakView
from castseg.structures import Instances

H, W = 48, 64
GEOMETRY_ONLY = {"jitter_prob": 0.0, "grayscale_prob": 0.0, "blur_prob": 0.0}


def coordinate_image(batch: int, height: int = H, width: int = W) -> torch.Tensor:
    """[B, 3, H, W] whose channels 0 and 1 are each pixel's x / W and y / H."""
    y, x = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )
    image = torch.stack([x / width, y / height, torch.full_like(x, 0.5)])
    return image.expand(batch, -1, -1, -1).clone()


def cell_centres(feature_size: tuple[int, int]) -> torch.Tensor:
    """[2, h, w] weak pixel (x, y) of each feature cell centre, computed independently."""
    h, w = feature_size
    x = torch.tensor([(j + 0.5) * W / w - 0.5 for j in range(w)], dtype=torch.float64)
    y = torch.tensor([(i + 0.5) * H / h - 0.5 for i in range(h)], dtype=torch.float64)
    return torch.stack([x[None, :].expand(h, w), y[:, None].expand(h, w)])


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("feature_size", [(H, W), (H // 4, W // 4)])
def test_correspondence_recovers_weak_coordinates(feature_size: tuple[int, int]) -> None:
    weak = coordinate_image(6)
    strong, weak_to_strong = StrongView(**GEOMETRY_ONLY)(weak, generator=seeded(0))
    grid, valid = correspondence_grid(weak_to_strong, (H, W), feature_size)

    # The strong feature map is the strong image pooled to the feature size: the mean of a linear
    # ramp over a cell is its value at the cell centre, so the comparison stays exact.
    z_strong = F.adaptive_avg_pool2d(strong, feature_size)
    sampled = F.grid_sample(z_strong, grid, align_corners=False, padding_mode="border")
    recovered = sampled[:, :2] * torch.tensor([W, H], dtype=torch.float64)[None, :, None, None]
    expected = cell_centres(feature_size).expand_as(recovered)

    # Away from the strong border, where the crop's resize clamps and the ramp stops being linear.
    h, w = feature_size
    cell_xy = (grid + 1) / 2 * torch.tensor([w, h], dtype=torch.float64) - 0.5
    interior = ((cell_xy >= 1) & (cell_xy <= torch.tensor([w - 2, h - 2]))).all(-1)
    assert interior.sum() > 0.3 * interior.numel()
    assert valid[interior].all()
    error = (recovered - expected).abs().amax(1)
    assert error[interior].max() < 1e-3

    # The valid cells are those inside the crop, whose area fraction is 1 / (sx * sy).
    crop_area = 1 / (weak_to_strong[:, 0, 0] * weak_to_strong[:, 1, 1])
    fraction = valid.double().mean((1, 2))
    tolerance = 1e-9 if feature_size == (H, W) else 2 * (1 / h + 1 / w)
    assert torch.allclose(fraction, crop_area, atol=tolerance)
    assert (crop_area < 0.9).any()


def test_correspondence_of_identity_is_the_cell_grid() -> None:
    grid, valid = correspondence_grid(torch.eye(3)[None], (H, W), (3, 4))
    assert valid.all()
    assert torch.allclose(grid[0, 0, :, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert torch.allclose(grid[0, :, 0, 1], torch.tensor([-2 / 3, 0.0, 2 / 3]))

    # A point is inside the strong view up to the outer edge of its border pixels, x >= -0.5.
    shifts = torch.eye(3).repeat(2, 1, 1)
    shifts[:, 0, 2] = torch.tensor([-0.4, -0.6])
    _, valid = correspondence_grid(shifts, (H, W), (H, W))
    assert valid[0].all()
    assert not valid[1, :, 0].any() and valid[1, :, 1:].all()


def coloured_scene() -> tuple[torch.Tensor, Instances]:
    """A 40 x 60 black image with a red square (label 3) and a green bar (label 5, ignore)."""
    image = torch.zeros(3, 40, 60)
    masks = torch.zeros(2, 40, 60, dtype=torch.bool)
    masks[0, 8:20, 36:50] = True
    masks[1, 26:34, 4:30] = True
    image[0][masks[0]] = 1.0
    image[1][masks[1]] = 1.0
    instances = Instances(
        masks,
        torch.tensor([3, 5]),
        scores=torch.tensor([0.9, 0.4]),
        class_probs=torch.tensor([[0.0, 0.9, 0.1], [0.6, 0.0, 0.4]]),
        ignore=masks[1].clone(),
    )
    return image, instances


def assert_masks_follow_colours(image: torch.Tensor, instances: Instances) -> None:
    for channel, label in [(0, 3), (1, 5)]:
        mask = instances.masks[instances.labels == label]
        colour = image[channel]
        if len(mask) == 0:
            assert colour.max() < 0.5
            continue
        assert (colour[mask[0]] > 0.1).all()
        assert mask[0][colour > 0.99].all()
    green = instances.masks[instances.labels == 5]
    expected_ignore = green[0] if len(green) else torch.zeros_like(instances.ignore)
    assert torch.equal(instances.ignore, expected_ignore)


def test_weak_view_flip_mirrors_image_and_masks() -> None:
    image, instances = coloured_scene()
    out, out_instances = WeakView((40, 60), scale_range=(1.0, 1.0), flip_prob=1.0)(
        image, instances, seeded(0)
    )
    assert torch.allclose(out, image.flip(-1), atol=1e-6)
    assert torch.equal(out_instances.masks, instances.masks.flip(-1))
    assert_masks_follow_colours(out, out_instances)


@pytest.mark.parametrize("scale_range", [(0.5, 0.8), (1.2, 2.0)])
def test_weak_view_keeps_masks_on_their_pixels(scale_range: tuple[float, float]) -> None:
    image, instances = coloured_scene()
    view = WeakView((32, 40), scale_range=scale_range)
    for seed in range(8):
        out, out_instances = view(image, instances, seeded(seed))
        assert out.shape == (3, 32, 40)
        assert out_instances.masks.shape[1:] == (32, 40)
        assert_masks_follow_colours(out, out_instances)


def test_weak_view_drops_cropped_out_instances_consistently() -> None:
    image, instances = coloured_scene()
    view = WeakView((20, 20), scale_range=(2.0, 2.0))
    kept_counts = set()
    for seed in range(30):
        out, out_instances = view(image, instances, seeded(seed))
        red_visible = bool((out[0] > 0.5).any())
        assert (3 in out_instances.labels.tolist()) == red_visible
        assert out_instances.masks.flatten(1).any(1).all()
        for i, label in enumerate(out_instances.labels.tolist()):
            source = instances.labels.tolist().index(label)
            assert out_instances.scores[i] == instances.scores[source]
            assert torch.equal(out_instances.class_probs[i], instances.class_probs[source])
        assert_masks_follow_colours(out, out_instances)
        kept_counts.add(len(out_instances))
    assert 2 in kept_counts and min(kept_counts) < 2


def test_weak_view_is_deterministic_per_generator() -> None:
    image, instances = coloured_scene()
    view = WeakView((32, 40))
    first = view(image, instances, seeded(7))
    second = view(image, instances, seeded(7))
    assert torch.equal(first[0], second[0])
    assert torch.equal(first[1].masks, second[1].masks)
    others = [view(image, instances, seeded(seed))[0] for seed in range(8, 12)]
    assert any(not torch.equal(first[0], other) for other in others)


def test_weak_view_without_instances_and_shape_errors() -> None:
    image, instances = coloured_scene()
    out, none = WeakView((16, 16))(image, None, seeded(0))
    assert out.shape == (3, 16, 16) and none is None
    with pytest.raises(ValueError, match="instances are"):
        WeakView((16, 16))(image[:, :20], instances)


def test_strong_view_is_reproducible_and_leaves_global_rng_alone() -> None:
    images = torch.rand(3, 3, 24, 32)
    view = StrongView()
    state = torch.get_rng_state()
    first = view(images, generator=seeded(1))
    second = view(images, generator=seeded(1))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    other = view(images, generator=seeded(2))
    assert not torch.equal(first[1], other[1])


def smooth_image(batch: int) -> torch.Tensor:
    return F.interpolate(torch.rand(batch, 3, 6, 8), size=(24, 32), mode="bilinear")


@pytest.mark.parametrize(
    ("probs", "check"),
    [
        ({"jitter_prob": 1.0}, "changed"),
        ({"grayscale_prob": 1.0}, "gray"),
        ({"blur_prob": 1.0}, "smoother"),
    ],
)
def test_strong_view_photometric_ops(probs: dict[str, float], check: str) -> None:
    images = smooth_image(4) + 0.2 * torch.rand(4, 3, 24, 32).clamp(max=0.8)
    reference, reference_matrix = StrongView(**GEOMETRY_ONLY)(images, generator=seeded(3))
    strong, matrix = StrongView(**{**GEOMETRY_ONLY, **probs})(images, generator=seeded(3))
    assert torch.equal(matrix, reference_matrix)  # photometric ops do not move pixels
    assert strong.shape == images.shape
    if check == "changed":
        assert (strong - reference).abs().mean((1, 2, 3)).min() > 0.01
    elif check == "gray":
        assert torch.allclose(strong[:, :2], strong[:, 1:])
        assert not torch.allclose(reference[:, 0], reference[:, 1])
    else:
        variation = (strong.diff(dim=-1).abs().mean(), reference.diff(dim=-1).abs().mean())
        assert variation[0] < 0.9 * variation[1]


def test_resize_view_pads_and_unresizes() -> None:
    view = ResizeView((32, 32))
    image, instances = coloured_scene()  # 40 x 60 -> content 21 x 32
    out, out_instances = view(image, instances)
    assert view.content_size((40, 60)) == (21, 32)
    assert out.shape == (3, 32, 32) and out[:, 21:].abs().max() == 0
    assert not out_instances.masks[:, 21:].any()
    assert_masks_follow_colours(out, out_instances)

    # Predictions on a 16 x 16 grid over the view that encode the original (x, y) of each cell
    # centre (content 21 x 32 of the 32 x 32 view is the 40 x 60 image): unresize must invert it.
    centres = (torch.arange(16, dtype=torch.float64) + 0.5) * 2 - 0.5
    original_x = (centres + 0.5) * 60 / 32 - 0.5
    original_y = (centres + 0.5) * 40 / 21 - 0.5
    coarse = torch.stack(
        [original_x[None, :].expand(16, 16) / 60, original_y[:, None].expand(16, 16) / 40]
    )
    back = view.unresize(coarse, (40, 60))
    assert back.shape == (2, 40, 60)
    ramp = coordinate_image(1, 40, 60)[0, :2]
    assert (back - ramp).abs()[:, 3:-3, 3:-3].max() < 1e-6
    with pytest.raises(TypeError, match="float"):
        view.unresize(out_instances.masks, (40, 60))


def test_weak_view_of_an_image_with_zero_instances() -> None:
    image = torch.rand(3, 60, 80)
    out, inst = WeakView((56, 56))(image, Instances.empty(60, 80), torch.Generator().manual_seed(0))
    assert out.shape == (3, 56, 56)
    assert inst is not None and len(inst) == 0 and inst.masks.shape == (0, 56, 56)
