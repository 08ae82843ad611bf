"""A marked markdown section is appended once, then replaced in place; other text never moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from castseg.deploy.markdown_section import replace_section, write_section

NAME = "castseg bench"
BEGIN, END = "<!-- castseg bench -->", "<!-- /castseg bench -->"


def test_an_absent_section_is_appended_after_the_text() -> None:
    text = "# Benchmarks\n\nHand-written prose.\n"
    assert replace_section(text, NAME, "| a |\n") == (
        f"# Benchmarks\n\nHand-written prose.\n\n{BEGIN}\n| a |\n{END}\n"
    )


def test_a_present_section_is_replaced_and_the_text_around_it_kept() -> None:
    text = f"# B\n\nbefore\n\n{BEGIN}\nold table\n{END}\n\n## After\n\ntail\n"
    replaced = replace_section(text, NAME, "    castseg bench\n\nnew table")
    assert (
        replaced
        == f"# B\n\nbefore\n\n{BEGIN}\n    castseg bench\n\nnew table\n{END}\n\n## After\n\ntail\n"
    )
    assert replace_section(replaced, NAME, "    castseg bench\n\nnew table") == replaced


def test_write_section_is_idempotent_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Other table\n\n| x |\n")
    write_section(path, NAME, "first")
    write_section(path, NAME, "second")
    once = path.read_text()
    write_section(path, NAME, "second")
    assert path.read_text() == once
    assert once.count(BEGIN) == 1 and "first" not in once and "second" in once
    assert once.startswith("# Benchmarks\n\n## Other table\n\n| x |\n")
    assert [p.name for p in tmp_path.iterdir()] == ["BENCHMARKS.md"]


def test_a_missing_file_is_created(tmp_path: Path) -> None:
    path = write_section(tmp_path / "new.md", NAME, "table")
    assert path.read_text() == f"{BEGIN}\ntable\n{END}\n"


@pytest.mark.parametrize(
    "text",
    [f"{BEGIN}\nno end\n", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{END}\n{BEGIN}\n{END}\n"],
    ids=["unclosed", "reversed", "twice"],
)
def test_broken_markers_are_an_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "B.md"
    path.write_text(text)
    with pytest.raises(ValueError, match="B.md"):
        write_section(path, NAME, "table")
    assert path.read_text() == text
