"""Sub-commands of the `castseg` command line; each module has `add_parser` and `run`."""

import argparse
from pathlib import Path


def add_override_argument(parser: argparse.ArgumentParser) -> None:
    """The repeatable `--set KEY=VALUE` option that overrides a config value."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set student.lr_decoder=1e-4 (repeatable)",
    )


def check_output_folder(folder: Path, what: str) -> None:
    """ValueError naming `what` when `folder` cannot become a folder: it, or the nearest of its
    parents that exists, is not a folder. Checked before any work, so nothing is half-written."""
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                where = "is" if path == folder else f"is inside {path}, which is"
                raise ValueError(f"{what} {folder} {where} a file; expected a folder")
            return
