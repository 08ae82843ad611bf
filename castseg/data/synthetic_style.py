"""How the synthetic world looks: each domain's style and the painting of shapes, textures,
backgrounds and distractors (`castseg.data.synthetic` lays scenes out and writes them).

Lengths are in pixels of a 112 × 112 image, scaled by `unit` where the painter takes one.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from numpy.random import Generator

CLASS_NAMES = ("disc", "box", "triangle", "ring", "cross")
CLASS_HUES = (0.0, 0.60, 0.33, 0.12, 0.80)  # HSV hue in [0, 1) of each class in the source domain
# How far toward the target's appearance the broad domain reaches, per setting: 1 would cover the
# target's look, and its stand-in teacher would start where adaptation should bring it.
BROAD_REACH = 0.6
Array = np.ndarray
Shaded = tuple[Array, Array]  # shape mask [H, W] bool, brightness [H, W] float


@dataclass(frozen=True)
class DomainStyle:
    """How one domain renders its scenes.

    Lengths (stripe_period) are in pixels of a 112-pixel image;
    saturation and texture_contrast scale the class colours and textures; background_blotches is
    the amplitude of low-frequency background noise; noise_std that of per-pixel noise.
    """

    hue_shift: float
    saturation: float
    texture_contrast: float
    stripe_period: float
    background_rgb: tuple[float, float, float]
    background_blotches: float
    clutter: tuple[int, int]  # inclusive range of distractor shapes per image
    blur_passes: int
    noise_std: float


DOMAIN_STYLES = {
    "source": DomainStyle(
        hue_shift=0.0,
        saturation=1.0,
        texture_contrast=1.0,
        stripe_period=6.0,
        background_rgb=(0.82, 0.80, 0.74),
        background_blotches=0.04,
        clutter=(0, 2),
        blur_passes=0,
        noise_std=0.02,
    ),
    "target": DomainStyle(
        hue_shift=0.06,
        saturation=0.75,
        texture_contrast=0.6,
        stripe_period=3.5,
        background_rgb=(0.36, 0.38, 0.42),
        background_blotches=0.15,
        clutter=(1, 4),
        blur_passes=1,
        noise_std=0.06,
    ),
}


def domain_style(rng: Generator, domain: str) -> DomainStyle:
    """The style of one image of `domain`: fixed for source and target, drawn for broad."""
    return _broad_style(rng) if domain == "broad" else DOMAIN_STYLES[domain]


def _broad_style(rng: Generator) -> DomainStyle:
    """A `broad` image's style: each setting drawn on its own, uniformly between its source value
    and BROAD_REACH of the way to its target value (blur with probability BROAD_REACH)."""
    source, target = DOMAIN_STYLES["source"], DOMAIN_STYLES["target"]

    def toward(a: float, b: float, t: float) -> float:
        return a + t * BROAD_REACH * (b - a)

    def drawn(a: float, b: float) -> float:
        return toward(a, b, rng.random())

    shade = rng.random()  # one draw for the background colour, so it stays a grey
    return DomainStyle(
        hue_shift=drawn(source.hue_shift, target.hue_shift),
        saturation=drawn(source.saturation, target.saturation),
        texture_contrast=drawn(source.texture_contrast, target.texture_contrast),
        stripe_period=drawn(source.stripe_period, target.stripe_period),
        background_rgb=tuple(
            toward(a, b, shade)
            for a, b in zip(source.background_rgb, target.background_rgb, strict=True)
        ),
        background_blotches=drawn(source.background_blotches, target.background_blotches),
        clutter=(source.clutter[0], round(toward(source.clutter[1], target.clutter[1], 1.0))),
        blur_passes=int(rng.random() < BROAD_REACH),
        noise_std=drawn(source.noise_std, target.noise_std),
    )


def _disc(rng: Generator, u: Array, v: Array, radius: float, period: float) -> Shaded:
    """Ellipse with sphere-like radial shading."""
    e = (u / radius) ** 2 + (v / (radius * rng.uniform(0.8, 1.0))) ** 2
    return e <= 1.0, 1.15 - 0.45 * e


def _box(rng: Generator, u: Array, v: Array, radius: float, period: float) -> Shaded:
    """Rectangle with stripes."""
    half_v = 0.9 * radius * rng.uniform(0.55, 1.0)
    mask = (np.abs(u) <= 0.9 * radius) & (np.abs(v) <= half_v)
    return mask, 0.9 + 0.2 * np.sign(np.sin(2 * np.pi * u / period))


def _triangle(rng: Generator, u: Array, v: Array, radius: float, period: float) -> Shaded:
    """Equilateral triangle (circumradius `radius`) with a linear gradient."""
    normals = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
    mask = np.ones(u.shape, dtype=bool)
    for normal in normals:
        mask &= u * np.cos(normal) + v * np.sin(normal) <= radius / 2
    return mask, 0.95 + 0.3 * v / radius


def _ring(rng: Generator, u: Array, v: Array, radius: float, period: float) -> Shaded:
    """Annulus with eight alternating light and dark sectors."""
    d = np.hypot(u, v)
    mask = (d <= radius) & (d >= radius * rng.uniform(0.45, 0.6))
    sector = np.floor((np.arctan2(v, u) + np.pi) * 4 / np.pi) % 2
    return mask, 0.85 + 0.3 * sector


def _cross(rng: Generator, u: Array, v: Array, radius: float, period: float) -> Shaded:
    """Plus sign with speckle."""
    arm = 0.32 * radius
    au, av = np.abs(u), np.abs(v)
    mask = ((au <= arm) & (av <= radius)) | ((au <= radius) & (av <= arm))
    return mask, 0.8 + 0.4 * rng.random(u.shape)


SHAPES = (_disc, _box, _triangle, _ring, _cross)  # aligned with CLASS_NAMES


def instance_colour(rng: Generator, label: int, style: DomainStyle) -> np.ndarray:
    hue = (CLASS_HUES[label] + style.hue_shift + rng.normal(0.0, 0.02)) % 1.0
    saturation = style.saturation * rng.uniform(0.6, 0.9)
    return np.asarray(colorsys.hsv_to_rgb(hue, saturation, rng.uniform(0.6, 0.9)))


def background(rng: Generator, yy: Array, xx: Array, style: DomainStyle) -> np.ndarray:
    """Base colour with a linear gradient and low-frequency blotches, [H, W, 3] float."""
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(direction) * xx + np.sin(direction) * yy) / max(yy.shape)
    blotches = _smooth_noise(rng, yy.shape, cells=6) - 0.5
    base = np.asarray(style.background_rgb) * rng.uniform(0.9, 1.1, 3)
    light = 0.08 * (ramp - 0.5) + 2 * style.background_blotches * blotches
    return base[None, None] + light[..., None]


def _smooth_noise(rng: Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Bilinearly upsampled uniform noise on a (cells+1)² grid, [H, W] in [0, 1]."""
    coarse = rng.random((cells + 1, cells + 1))
    ys, xs = np.linspace(0, cells, shape[0]), np.linspace(0, cells, shape[1])
    y0, x0 = np.minimum(ys.astype(int), cells - 1), np.minimum(xs.astype(int), cells - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def draw_distractor(rng: Generator, canvas: Array, yy: Array, xx: Array, unit: float) -> None:
    """Paint a greyish stroke or blob that is not an instance."""
    height, width = yy.shape
    colour = np.asarray(
        colorsys.hsv_to_rgb(rng.random(), rng.uniform(0, 0.15), rng.uniform(0.2, 1))
    )
    y0, x0 = rng.uniform(0, height), rng.uniform(0, width)
    if rng.random() < 0.5:
        length, direction = rng.uniform(10, 40) * unit, rng.uniform(0, 2 * np.pi)
        ey, ex = length * np.sin(direction), length * np.cos(direction)
        t = np.clip(((yy - y0) * ey + (xx - x0) * ex) / length**2, 0.0, 1.0)
        mask = np.hypot(yy - y0 - t * ey, xx - x0 - t * ex) <= rng.uniform(0.7, 1.6) * unit
    else:
        mask = np.hypot(yy - y0, xx - x0) <= rng.uniform(2, 5) * unit
    canvas[mask] = colour


def blur(image: np.ndarray, passes: int) -> np.ndarray:
    """Separable [1, 2, 1] / 4 smoothing of [H, W, 3], repeated `passes` times."""
    for _ in range(passes):
        for axis in (0, 1):
            padded = np.pad(image, [(1, 1) if a == axis else (0, 0) for a in range(3)], "edge")
            lo, mid, hi = (np.take(padded, range(k, k + image.shape[axis]), axis) for k in range(3))
            image = 0.25 * lo + 0.5 * mid + 0.25 * hi
    return image
