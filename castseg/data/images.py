"""Image files: a cheap check of a file's header and end, and decoding to float RGB.

`check_image_file` is what datasets run on every image at construction: it opens the header
(format, mode, size, EXIF orientation) without decoding pixels and reads the last bytes of PNG
and JPEG files, where a truncated file lacks its end marker. Only a file without its end marker
is decoded in full, to tell truncation from harmless trailing bytes. Damage in the middle of a
file that keeps both header and end marker is found only when `load_rgb_image` decodes it.

Modes: 8-bit files go through Pillow's RGB conversion (grayscale replicated, alpha and palette
transparency dropped); 16-bit grayscale ('I;16*', and 'I' as Pillow reads some 16-bit files) is
scaled by 1/65535, since Pillow's RGB conversion would clip it at 255. Pillow reads 16-bit RGB
PNGs at 8 bits (their high byte). Floating-point images (mode 'F') are refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps
from torch import Tensor

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_END_MARKERS = {"PNG": b"\x00\x00\x00\x00IEND\xaeB`\x82", "JPEG": b"\xff\xd9"}
_ROTATED_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap height and width
# What Pillow raises for unreadable files (UnidentifiedImageError is an OSError).
_READ_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def check_image_file(path: Path) -> tuple[int, int]:
    """(H, W) of the image at `path` after EXIF rotation, without decoding it if it looks whole.

    Raises FileNotFoundError when the file does not exist and ValueError, naming the file, when
    it is not an image Pillow can read, has an unsupported mode or is truncated.
    """
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    try:
        with Image.open(path) as image:
            mode, (width, height) = image.mode, image.size
            if _orientation(image) in _ROTATED_ORIENTATIONS:
                height, width = width, height
            marker = _END_MARKERS.get(image.format or "")
            if marker is not None and not _ends_with(path, marker):
                image.load()  # only a full decode tells truncation from trailing bytes
    except _READ_ERRORS as err:
        raise ValueError(f"cannot read image file {path}: {err}") from err
    _check_mode(mode, path)
    return height, width


def load_rgb_image(path: Path) -> Tensor:
    """Image file as [3, H, W] float RGB in [0, 1], EXIF rotation applied.

    Raises FileNotFoundError when the file does not exist and ValueError, naming the file, when it
    cannot be decoded.
    """
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            mode = image.mode
            if mode in SIXTEEN_BIT_MODES or mode == "F":
                pixels = np.asarray(image, dtype=np.float32)  # [H, W]
            else:
                pixels = np.array(image.convert("RGB"))  # [H, W, 3] uint8
    except FileNotFoundError as err:
        raise FileNotFoundError(f"image file {path} does not exist") from err
    except _READ_ERRORS as err:
        raise ValueError(f"cannot read image file {path}: {err}") from err
    _check_mode(mode, path)
    if pixels.ndim == 3:
        return torch.from_numpy(pixels).permute(2, 0, 1).float().div(255.0)
    if pixels.min() < 0 or pixels.max() > 65535:
        raise ValueError(f"image file {path} has mode {mode} values outside [0, 65535]")
    return torch.from_numpy(pixels / 65535.0).expand(3, -1, -1).contiguous()


def _check_mode(mode: str, path: Path) -> None:
    if mode == "F":
        raise ValueError(
            f"image file {path} holds floating-point pixels (mode F); save it as 8- or 16-bit"
        )


def _orientation(image: Image.Image) -> int | None:
    """EXIF orientation from the header. Pillow's getexif decodes a whole PNG to look for EXIF
    after the pixels, so a PNG's orientation comes only from EXIF stored before them."""
    if image.format != "PNG":
        return image.getexif().get(ExifTags.Base.Orientation)
    exif = Image.Exif()
    if "exif" in image.info:
        exif.load(image.info["exif"])
    return exif.get(ExifTags.Base.Orientation)


def _ends_with(path: Path, marker: bytes) -> bool:
    with path.open("rb") as f:
        size = f.seek(0, 2)
        if size < len(marker):
            return False
        f.seek(size - len(marker))
        return f.read() == marker
