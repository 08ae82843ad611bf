"""Image files: RGB conversion of every mode (16-bit scaled, not clipped) and the header checks."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from castseg.data.images import check_image_file, load_rgb_image

H, W = 6, 9


def _pixels(seed: int, shape: tuple[int, ...], high: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, shape)


def _png_rgb16(path: Path, rgb: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb)
    header = struct.pack(">IIBBBBB", rgb.shape[1], rgb.shape[0], 16, 2, 0, 0, 0)
    png = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "1", "CMYK"])
def test_eight_bit_modes_match_pillows_rgb_conversion(tmp_path, mode):
    image = Image.fromarray(_pixels(0, (H, W, 3), 256).astype(np.uint8)).convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    image.save(path)
    oracle = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
    loaded = load_rgb_image(path)
    assert loaded.shape == (3, H, W) and loaded.dtype == torch.float32
    torch.testing.assert_close(loaded, torch.from_numpy(oracle).permute(2, 0, 1))
    assert check_image_file(path) == (H, W)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    raw = _pixels(1, (H, W), 65536).astype(np.uint16)
    raw[0, 0], raw[0, 1] = 65535, 300  # 300 would clip to 255 in Pillow's RGB conversion
    Image.fromarray(raw).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    loaded = load_rgb_image(tmp_path / "g16.png")
    expected = torch.from_numpy(raw.astype(np.float64) / 65535).float()
    for channel in loaded:
        torch.testing.assert_close(channel, expected)
    assert loaded.max() == 1.0 and loaded[0, 0, 1] == pytest.approx(300 / 65535)


def test_sixteen_bit_rgb_keeps_its_high_byte(tmp_path):
    raw = _pixels(2, (H, W, 3), 65536)
    _png_rgb16(tmp_path / "rgb16.png", raw)
    loaded = load_rgb_image(tmp_path / "rgb16.png")
    expected = torch.from_numpy(raw / 65535).permute(2, 0, 1).float()
    torch.testing.assert_close(loaded, expected, atol=1 / 255, rtol=0)
    assert check_image_file(tmp_path / "rgb16.png") == (H, W)


def test_exif_rotation_swaps_the_checked_size(tmp_path):
    image = Image.fromarray(_pixels(3, (H, W, 3), 256).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    for name in ("r.jpg", "r.png"):
        image.save(tmp_path / name, exif=exif)
        assert check_image_file(tmp_path / name) == (W, H)
        assert load_rgb_image(tmp_path / name).shape == (3, W, H)


def test_truncated_files_fail_the_check_and_trailing_bytes_do_not(tmp_path):
    image = Image.fromarray(_pixels(4, (64, 64, 3), 256).astype(np.uint8))
    for suffix in ("png", "jpg"):
        whole = tmp_path / f"whole.{suffix}"
        image.save(whole)
        cut = tmp_path / f"cut.{suffix}"
        cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
        with pytest.raises(ValueError, match=rf"cannot read image file {cut}: .*truncated"):
            check_image_file(cut)
        padded = tmp_path / f"padded.{suffix}"
        padded.write_bytes(whole.read_bytes() + b"trailing bytes")
        assert check_image_file(padded) == (64, 64)


def test_unreadable_missing_and_float_files_name_the_file(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=rf"cannot read image file {tmp_path / 'junk.png'}"):
        check_image_file(tmp_path / "junk.png")
    with pytest.raises(ValueError, match=rf"cannot read image file {tmp_path / 'junk.png'}"):
        load_rgb_image(tmp_path / "junk.png")
    for check in (check_image_file, load_rgb_image):
        with pytest.raises(FileNotFoundError, match=rf"image file {tmp_path / 'no.png'} does"):
            check(tmp_path / "no.png")
    Image.fromarray(np.ones((H, W), dtype=np.float32)).save(tmp_path / "f.tif")
    for check in (check_image_file, load_rgb_image):
        with pytest.raises(ValueError, match=r"f\.tif holds floating-point pixels"):
            check(tmp_path / "f.tif")
