"""Sub-commands of the `castseg` command line; each module has `add_parser` and `run`."""

import argparse


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
