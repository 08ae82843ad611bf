"""Weak and strong views of an image, as the CAST pixel-contrastive loss sees them.

`WeakView` is the geometric augmentation every training image gets, one sample at a time: a
horizontal flip and large-scale jitter (a random rescale, then a random crop or a zero pad to a
fixed size); ground-truth and pseudo-label `Instances` follow it exactly. `ResizeView` is its
deterministic counterpart for evaluation. `StrongView` is drawn from a batch of weak images: a
random resized crop, colour jitter, grayscale and blur, returned with the affine matrix that
maps weak pixels to strong pixels (see `castseg.data.correspondence`).

Pixel coordinates follow the `align_corners=False` convention: the centre of pixel (row i,
column j) is at (x, y) = (j, i) and the pixel covers [j - 0.5, j + 0.5] x [i - 0.5, i + 0.5].
"""

from __future__ import annotations

import math

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from kornia.geometry.transform import resize
from torch import Tensor

from castseg.structures import Instances


def _check_pair(value: tuple[float, float], name: str, low: float, high: float) -> None:
    if not low <= value[0] <= value[1] <= high:
        raise ValueError(
            f"{name} must be (min, max) with {low} <= min <= max <= {high}, got {value}"
        )


def _check_prob(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (H, W) with positive integers, got {size}")
    return int(size[0]), int(size[1])


def _check_sample(image: Tensor, instances: Instances | None) -> None:
    if image.dim() != 3 or image.shape[0] != 3 or not image.is_floating_point():
        raise ValueError(
            f"image must be a float [3, H, W] tensor, got {image.dtype} {tuple(image.shape)}"
        )
    if instances is not None and instances.image_size != tuple(image.shape[1:]):
        raise ValueError(
            f"instances are {instances.image_size} but the image is {tuple(image.shape[1:])}"
        )


def _fit_scale(image_size: tuple[int, int], size: tuple[int, int]) -> float:
    """Scale at which an image of `image_size` just fits inside `size`."""
    return min(size[0] / image_size[0], size[1] / image_size[1])


def _scaled_size(image_size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(image_size[0] * scale)), max(1, round(image_size[1] * scale))


def _crop_pad(x: Tensor, offset: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Window of `size` at `offset` (top, left) of x [..., h, w], zero-padded bottom/right."""
    x = x[..., offset[0] : offset[0] + size[0], offset[1] : offset[1] + size[1]]
    return F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]))


def _place(
    image: Tensor,
    instances: Instances | None,
    flip: bool,
    scaled_size: tuple[int, int],
    offset: tuple[int, int],
    size: tuple[int, int],
) -> tuple[Tensor, Instances | None]:
    """Flip, resize to `scaled_size`, then crop / zero-pad the `size` window at `offset`.

    image: [3, H0, W0] -> [3, H, W]. Masks and `ignore` are resized with nearest-exact sampling
    (the same pixel centres as the image's bilinear resize) and stay bool; instances whose mask
    ends up empty are dropped together with their labels, scores and class probabilities.
    """
    if flip:
        image = image.flip(-1)
    # torch's antialiased bilinear (triangle filter); kornia's Gaussian pre-blur is 5-15x slower.
    image = F.interpolate(
        image[None], scaled_size, mode="bilinear", antialias=True, align_corners=False
    )[0]
    image = _crop_pad(image, offset, size)
    if instances is None:
        return image, None

    planes = instances.masks
    if instances.ignore is not None:
        planes = torch.cat([planes, instances.ignore[None]])
    planes = planes.to(torch.uint8)
    if planes.shape[0] == 0:  # no instances and no crowd region: nothing to resample
        planes = planes.new_zeros(0, *size)
    else:
        if flip:
            planes = planes.flip(-1)
        planes = F.interpolate(planes[None], size=scaled_size, mode="nearest-exact")[0]
        planes = _crop_pad(planes, offset, size)
    planes = planes.bool()

    num = len(instances)
    masks, ignore = planes[:num], (planes[num] if instances.ignore is not None else None)
    keep = masks.flatten(1).any(1)
    return image, Instances(
        masks[keep],
        instances.labels[keep],
        None if instances.scores is None else instances.scores[keep],
        None if instances.class_probs is None else instances.class_probs[keep],
        ignore,
    )


class WeakView:
    """Weak (geometric) augmentation of one training sample: flip and large-scale jitter.

    The image is flipped horizontally with probability `flip_prob`, rescaled by a factor drawn
    uniformly from `scale_range` times the scale at which it just fits inside `size`, and then
    cropped at a random position (where larger than `size`) and zero-padded at the bottom/right
    (where smaller). Padded pixels are background: image 0, masks and ignore False.
    """

    def __init__(
        self,
        size: tuple[int, int],
        scale_range: tuple[float, float] = (0.5, 2.0),
        flip_prob: float = 0.5,
    ) -> None:
        self.size = _check_size(size)
        _check_pair(scale_range, "scale_range", 1e-6, math.inf)
        _check_prob(flip_prob, "flip_prob")
        self.scale_range = scale_range
        self.flip_prob = flip_prob

    def __call__(
        self,
        image: Tensor,
        instances: Instances | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Instances | None]:
        """image [3, H0, W0] float in [0, 1], instances at [H0, W0] -> image [3, H, W], instances.

        Every random draw comes from `generator` (the global generator when None), in a fixed
        order, so a generator in a given state always gives the same view.
        """
        _check_sample(image, instances)
        image_size = (int(image.shape[1]), int(image.shape[2]))
        flip = bool(torch.rand((), generator=generator) < self.flip_prob)
        low, high = self.scale_range
        jitter = low + (high - low) * float(torch.rand((), generator=generator))
        scaled = _scaled_size(image_size, _fit_scale(image_size, self.size) * jitter)
        top = int(torch.randint(max(scaled[0] - self.size[0], 0) + 1, (), generator=generator))
        left = int(torch.randint(max(scaled[1] - self.size[1], 0) + 1, (), generator=generator))
        return _place(image, instances, flip, scaled, (top, left), self.size)


class ResizeView:
    """Deterministic evaluation view: keep the aspect ratio, fit inside `size`, pad bottom/right.

    This is `WeakView` at scale 1 without flip or crop, so a model sees objects at the same scale
    in evaluation as on average in training. `unresize` maps predictions back onto the original
    image; it needs only the original size.
    """

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = _check_size(size)

    def content_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the image region (the rest is padding) for an original (H0, W0) image."""
        return _scaled_size(image_size, _fit_scale(image_size, self.size))

    def __call__(
        self, image: Tensor, instances: Instances | None = None
    ) -> tuple[Tensor, Instances | None]:
        """image [3, H0, W0] float in [0, 1], instances at [H0, W0] -> [3, H, W], instances."""
        _check_sample(image, instances)
        content = self.content_size((int(image.shape[1]), int(image.shape[2])))
        return _place(image, instances, False, content, (0, 0), self.size)

    def unresize(self, maps: Tensor, image_size: tuple[int, int]) -> Tensor:
        """Map per-pixel predictions on the view back onto the original image.

        maps: [..., h, w] float (mask logits or probabilities; threshold afterwards), covering the
        whole [H, W] view at any resolution -> [..., H0, W0] for `image_size` = (H0, W0). As in
        Mask2Former: upsample to the view size, drop the padding, resize to the original size.
        """
        if not maps.is_floating_point():
            raise TypeError(f"maps must be float logits or probabilities, got {maps.dtype}")
        content = self.content_size(image_size)
        maps = resize(maps, self.size, interpolation="bilinear", align_corners=False)
        maps = maps[..., : content[0], : content[1]]
        return resize(maps, image_size, interpolation="bilinear", align_corners=False)


class StrongView:
    """Strong augmentation of a batch of weak images, with the geometry it applied.

    A random resized crop (kornia `RandomResizedCrop`, area fraction `crop_scale`, aspect ratio
    `crop_ratio`) resized back to the weak size, then colour jitter (brightness, contrast,
    saturation, hue = `jitter`) with probability `jitter_prob`, grayscale with `grayscale_prob`
    and Gaussian blur (sigma drawn from `blur_sigma`, kernel 2 * ceil(3 * max sigma) + 1) with
    `blur_prob`. Only the crop moves pixels; its matrix is returned as `weak_to_strong`.
    """

    def __init__(
        self,
        crop_scale: tuple[float, float] = (0.3, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
        jitter_prob: float = 0.8,
        grayscale_prob: float = 0.2,
        blur_prob: float = 0.5,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
    ) -> None:
        _check_pair(crop_scale, "crop_scale", 1e-6, 1.0)
        _check_pair(crop_ratio, "crop_ratio", 1e-6, math.inf)
        _check_pair(blur_sigma, "blur_sigma", 1e-6, math.inf)
        for name, prob in [
            ("jitter_prob", jitter_prob),
            ("grayscale_prob", grayscale_prob),
            ("blur_prob", blur_prob),
        ]:
            _check_prob(prob, name)
        self.crop_scale = crop_scale
        self.crop_ratio = crop_ratio
        blur_kernel = 2 * math.ceil(3 * blur_sigma[1]) + 1
        self.photometric = K.ImageSequential(
            K.ColorJitter(*jitter, p=jitter_prob),
            K.RandomGrayscale(p=grayscale_prob),
            K.RandomGaussianBlur(blur_kernel, blur_sigma, p=blur_prob),
        )

    def __call__(
        self, images: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """images [B, 3, H, W] float in [0, 1] -> (strong [B, 3, H, W], weak_to_strong [B, 3, 3]).

        weak_to_strong maps homogeneous weak pixel coordinates (x, y, 1) to strong pixel
        coordinates. kornia draws its parameters from the global CPU generator; with `generator`
        a seed is drawn from it and used in a forked CPU generator state, so the view is
        reproducible and the global state is left untouched.
        """
        if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(
                f"images must be a float [B, 3, H, W] tensor, got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        if generator is None:
            return self._draw(images)
        seed = int(torch.randint(2**62, (), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            return self._draw(images)

    def _draw(self, images: Tensor) -> tuple[Tensor, Tensor]:
        # The crop's output size is the input size, so the crop is built for each call.
        crop = K.RandomResizedCrop(
            (images.shape[2], images.shape[3]),
            scale=self.crop_scale,
            ratio=self.crop_ratio,
            align_corners=False,
        )
        strong = crop(images)
        return self.photometric(strong), crop.transform_matrix
