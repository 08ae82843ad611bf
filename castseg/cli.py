"""The `castseg` command line. Each sub-command lives in castseg/commands/<name>.py.

Only the module of the command being run is imported (torch, Lightning and transformers take
seconds to import), so `castseg --help` lists the commands from `castseg.commands.COMMANDS`
alone. Adding a command is one entry there and a module with `add_parser(subparsers)` and
`run(args)` that imports nothing heavy before `run` is called.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from castseg import __version__
from castseg.commands import COMMANDS
from castseg.interruption import EXIT_CODE, Interrupted, sigint_interrupts


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the full sub-parser of the command named in `argv` (if any) and the
    others as names and help lines only."""
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((item for item in argv if not item.startswith("-")), None)
    parser = argparse.ArgumentParser(
        prog="castseg",
        description="Train compact instance-segmentation experts from vision foundation models.",
    )
    parser.add_argument("--version", action="version", version=f"castseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_line in COMMANDS.items():
        if name == chosen:
            importlib.import_module(f"castseg.commands.{name}").add_parser(sub)
        else:
            sub.add_parser(name, help=help_line, add_help=False)
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as one line, `castseg: warning: ...`: its message alone, not the source line
    that raised it."""
    return f"castseg: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    if not sys.stderr.isatty():
        # transformers' own bars ("Loading weights") would write carriage-return frames into a
        # redirected log; it reads this before its first import, which commands delay.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # Lightning's start-up banners (accelerators found, logger tips) are noise on the terminal.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    formatter = warnings.formatwarning
    warnings.formatwarning = _format_warning
    try:
        with sigint_interrupts():
            return int(args.run(args) or 0)
    except Interrupted as err:
        print(f"\ncastseg {args.command}: {err}", file=sys.stderr)
        return EXIT_CODE
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"castseg {args.command}: error: {err}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = formatter


if __name__ == "__main__":
    sys.exit(main())
