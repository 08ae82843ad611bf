"""A generated section of a hand-written markdown file, between two HTML comment markers.

    <!-- castseg bench -->
    ... replaced on every write ...
    <!-- /castseg bench -->

Text outside the markers is never touched, so a file such as BENCHMARKS.md can mix prose and
tables that a command regenerates.
"""

from __future__ import annotations

from pathlib import Path

from castseg.io import atomic_write_text


def section_markers(name: str) -> tuple[str, str]:
    """The opening and closing marker of section `name`."""
    return f"<!-- {name} -->", f"<!-- /{name} -->"


def replace_section(text: str, name: str, body: str, *, source: str = "<text>") -> str:
    """`text` with section `name` holding `body`; the section is appended when absent.

    Raises ValueError naming `source` when the markers are unbalanced, repeated or out of order.
    """
    begin, end = section_markers(name)
    counts = (text.count(begin), text.count(end))
    body = body.strip("\n").rstrip()  # keeps the indentation of a first code line
    block = f"{begin}\n{body}\n{end}"
    if counts == (0, 0):
        return f"{text.rstrip()}\n\n{block}\n" if text.strip() else f"{block}\n"
    start, stop = text.find(begin), text.find(end)
    if counts != (1, 1) or stop < start:
        raise ValueError(
            f"{source}: expected one {begin!r} followed by one {end!r}, found {counts[0]} and "
            f"{counts[1]}{' in the wrong order' if counts == (1, 1) else ''}; fix the markers"
        )
    return text[:start] + block + text[stop + len(end) :]


def write_section(path: str | Path, name: str, body: str) -> Path:
    """Put `body` into section `name` of markdown file `path` (created if missing), atomically."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    atomic_write_text(path, replace_section(text, name, body, source=str(path)))
    return path
