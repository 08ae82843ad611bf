"""The variants of an ablation grid: `--vary key=v1,v2` axes and their product.

Values are read as YAML, exactly like `--set` overrides, and every variant's config is built
(and so checked: unknown keys, wrong types, ranges) before any run starts. A comma inside
brackets belongs to the value: `--vary data.image_size=[252,252],[336,336]` is two values.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace
from pathlib import Path

from castseg.config import ConfigError, ExperimentConfig, apply_overrides


@dataclass(frozen=True)
class Axis:
    """One `--vary`: a config key and the values it takes, as written."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Variant:
    """One point of the grid: its overrides, a name for tables and a folder name."""

    overrides: tuple[str, ...]

    @property
    def name(self) -> str:
        return ", ".join(self.overrides)

    @property
    def folder(self) -> str:
        return "__".join(re.sub(r"[^A-Za-z0-9._=-]", "_", item) for item in self.overrides)


def parse_axis(text: str) -> Axis:
    """ "contrastive.mode=uniform,fusion" → Axis; ValueError for anything else."""
    key, sep, rest = text.partition("=")
    key = key.strip()
    values = tuple(v.strip() for v in _split_top_level(rest))
    if not sep or not key or not rest.strip() or not all(values):
        raise ValueError(f"--vary {text!r} must look like section.key=value1,value2")
    if len(set(values)) != len(values):
        raise ValueError(f"--vary {text!r}: a value repeats")
    return Axis(key, values)


def grid_variants(axes: list[Axis]) -> list[Variant]:
    """The product of the axes, the first axis varying slowest. ValueError when an axis
    repeats a key or there is none."""
    if not axes:
        raise ValueError("no --vary given: name at least one key=value1,value2 to vary")
    keys = [axis.key for axis in axes]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"--vary names {', '.join(repeated)} more than once")
    choices = [[f"{axis.key}={value}" for value in axis.values] for axis in axes]
    return [Variant(tuple(items)) for items in itertools.product(*choices)]


def variant_configs(
    cfg: ExperimentConfig, variants: list[Variant], out_dir: Path
) -> list[ExperimentConfig]:
    """Every variant's config, writing to out_dir/<variant folder>; ConfigError naming the
    variant for a key or value that the config refuses."""
    configs = []
    for variant in variants:
        try:
            varied = apply_overrides(cfg, variant.overrides)
        except ConfigError as err:
            raise ConfigError(f"--vary {variant.name}: {err}") from None
        run = replace(varied.run, out_dir=str(out_dir / variant.folder))
        configs.append(replace(varied, run=run))
    return configs


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets and braces."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts
