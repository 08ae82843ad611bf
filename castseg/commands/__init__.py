"""Sub-commands of the `castseg` command line; each module has `add_parser` and `run`."""
