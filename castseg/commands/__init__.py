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


def parse_seeds(text: str) -> tuple[int, ...]:
    """ "0,1,2" → (0, 1, 2); argparse's error for an empty list, a non-integer or a repeat."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or not all(items):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    try:
        seeds = tuple(int(item) for item in items)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed repeats in {text!r}")
    return seeds


def add_seeds_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """The `--seeds 0,1,2` option: one run per seed."""
    parser.add_argument("--seeds", type=parse_seeds, default=None, metavar="K,K,...", help=help)
