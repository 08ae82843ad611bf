"""collect_images: files, folders and glob patterns in, an ordered list of image files out."""

from __future__ import annotations

from pathlib import Path

import pytest

from castseg.deploy.image_inputs import collect_images


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """b.png, a.JPG, notes.txt, sub/c.jpeg, sub/deeper/d.png, empty/ under tmp_path."""
    for name in ["b.png", "a.JPG", "notes.txt", "sub/c.jpeg", "sub/deeper/d.png"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    return tmp_path


def test_a_folder_gives_its_images_sorted_without_recursing(tree: Path) -> None:
    assert collect_images([tree]) == [tree / "a.JPG", tree / "b.png"]


def test_a_file_is_taken_whatever_its_suffix(tree: Path) -> None:
    assert collect_images([str(tree / "notes.txt")]) == [tree / "notes.txt"]


def test_a_recursive_pattern_matches_image_files_in_sub_folders(tree: Path) -> None:
    found = collect_images([f"{tree}/**/*.*"])
    assert found == sorted(
        [tree / "a.JPG", tree / "b.png", tree / "sub/c.jpeg", tree / "sub/deeper/d.png"]
    )


def test_inputs_keep_their_order_and_repeat_nothing(tree: Path) -> None:
    found = collect_images([tree / "sub/c.jpeg", tree, tree / "b.png", f"{tree}/*.png"])
    assert found == [tree / "sub/c.jpeg", tree / "a.JPG", tree / "b.png"]


def test_a_missing_input_is_named(tree: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        collect_images([tree / "b.png", tree / "nothere.png"])


@pytest.mark.parametrize("item", ["empty", "*.gif", "sub/*.txt"])
def test_a_folder_or_pattern_without_images_is_named(tree: Path, item: str) -> None:
    with pytest.raises(ValueError, match="no image files") as err:
        collect_images([f"{tree}/{item}"])
    assert item.split("/")[-1] in str(err.value)


def test_no_inputs_is_an_error() -> None:
    with pytest.raises(ValueError, match="no input images"):
        collect_images([])
