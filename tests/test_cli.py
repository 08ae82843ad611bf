"""The `castseg` command line answers --help without importing torch, Lightning or transformers
(seconds of CPU each): only the chosen command's module is imported, and it imports its
dependencies when it runs. Import checks, not timings (the figure is in BENCHMARKS.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from castseg.cli import build_parser, main
from castseg.commands import COMMANDS

HEAVY = (
    "torch",
    "lightning",
    "transformers",
    "onnxruntime",
    "castseg.training",
    "castseg.pipeline",
    "castseg.runtime",
)
LIGHT_COMMANDS = sorted(COMMANDS)


def imported_after(argv: list[str]) -> list[str]:
    """The HEAVY modules a fresh interpreter holds after building the parser for `argv`."""
    code = (
        "import sys\nfrom castseg.cli import build_parser\n"
        f"build_parser({argv!r})\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [name for name in done.stdout.strip().split(",") if name]


def test_castseg_help_imports_no_command_module() -> None:
    assert imported_after(["--help"]) == []


@pytest.mark.parametrize("command", LIGHT_COMMANDS)
def test_a_commands_help_imports_nothing_heavy(command: str) -> None:
    assert imported_after([command, "--help"]) == []


def test_help_lists_every_command_with_its_line(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    printed = " ".join(capsys.readouterr().out.split())
    for name, line in COMMANDS.items():
        assert f"{name} {line}" in printed


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_module_builds_its_own_parser(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser([command, "--help"]).parse_args([command, "--help"])
    assert done.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith(f"usage: castseg {command} ") and "--" in usage
