"""The `castseg` command line. Each sub-command lives in castseg/commands/<name>.py."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from castseg import __version__

COMMANDS = ("demo", "run", "ablate", "eval", "predict", "export", "bench", "split", "convert")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="castseg",
        description="Train compact instance-segmentation experts from vision foundation models.",
    )
    parser.add_argument("--version", action="version", version=f"castseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"castseg.commands.{name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Lightning's start-up banners (accelerators found, logger tips) are noise on the terminal.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    try:
        return int(args.run(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"castseg {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
