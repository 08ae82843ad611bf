"""The image files a `castseg predict` command line names: files, folders and glob patterns."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

# Every format Pillow reads without plugins that photos and datasets come in.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_GLOB_CHARACTERS = frozenset("*?[")


def is_image_file(path: Path) -> bool:
    """Whether `path` has one of `IMAGE_SUFFIXES` (any letter case)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """The image files named by `inputs`, in the order given, each once.

    Each input is
      - a file: taken as it is, whatever its suffix (reading it tells whether it is an image);
      - a folder: its files with an image suffix, sorted by name, not recursing into sub-folders;
      - a glob pattern (holding * ? or [): its matches with an image suffix, sorted; `**`
        matches sub-folders at any depth.

    Raises FileNotFoundError naming an input that is neither a file, a folder nor a pattern with
    matches, and ValueError naming a folder or pattern that yields no image file, or when
    `inputs` is empty.
    """
    if not inputs:
        raise ValueError("no input images: give image files, folders or glob patterns")
    found: dict[Path, None] = {}
    for item in inputs:
        for path in _expand(str(item)):
            found.setdefault(path, None)
    return list(found)


def _expand(item: str) -> list[Path]:
    path = Path(item)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
        if not files:
            raise ValueError(
                f"folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)}; "
                "sub-folders are not searched: use a pattern such as 'DIR/**/*.jpg')"
            )
        return files
    if _GLOB_CHARACTERS.intersection(item):
        matches = sorted(Path(p) for p in glob.glob(item, recursive=True))
        files = [p for p in matches if p.is_file() and is_image_file(p)]
        if not files:
            raise ValueError(
                f"pattern {item!r} matches no image files ({len(matches)} matches, none a file "
                f"with a suffix in {', '.join(IMAGE_SUFFIXES)})"
            )
        return files
    raise FileNotFoundError(f"input {path} does not exist (no such file, folder or glob pattern)")
