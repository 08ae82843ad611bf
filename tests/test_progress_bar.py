"""Bars in a redirected log are lines, not carriage-return frames; on a terminal tqdm is as is."""

import io
import sys

from castseg.progress_bar import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_in_a_redirected_log_writes_whole_lines_ending_with_the_total(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    for _ in progress_bar(range(5), desc="checking the labeled set", mininterval=0, leave=False):
        pass
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) >= 2 and all(line.startswith("checking the labeled set") for line in lines)
    assert "5/5" in lines[-1]


def test_a_bar_on_a_terminal_redraws_in_place(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    for _ in progress_bar(range(3), desc="eval", mininterval=0):
        pass
    assert "\r" in terminal.getvalue()


def test_a_disabled_bar_writes_nothing(monkeypatch):
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    for _ in progress_bar(range(3), desc="eval", enabled=False):
        pass
    assert log.getvalue() == ""
