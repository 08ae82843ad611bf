"""Reading a config: YAML, `--set` overrides, every value checked against its field's type.

`load_config` reads the YAML file, applies the `section.key=value` overrides to what it read
(as if the file said them), then builds and checks the config once: every key and value against
the field types and ranges, reported by full key path (``student.lr_encoder: expected float,
got str 'abc'``), then what depends on several keys (`check_consistency`). An error names the
`--set` that set the offending key, else the file. Relative paths are relative to the working
directory.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from castseg.config.consistency import check_consistency
from castseg.config.schema import ConfigError, ExperimentConfig

BUILTIN_CONFIG_DIR = Path(__file__).parent.parent / "configs"


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that reads 1e-4 as a float (YAML 1.2); plain PyYAML reads it as a string."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


@dataclasses.dataclass(frozen=True)
class Override:
    """One `section.key=value` as given (`text`), its key and its value read as YAML."""

    text: str
    key: str
    value: Any

    @classmethod
    def parse(cls, text: str) -> Override:
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {text!r} must look like section.key=value")
        try:
            return cls(text, key, yaml.load(value, Loader=_YamlLoader))
        except yaml.YAMLError as err:
            raise ConfigError(f"override {text!r}: invalid value ({err})") from err

    def sets(self, key: str) -> bool:
        """Whether this override sets `key` (itself, or a section holding it)."""
        return key == self.key or key.startswith((f"{self.key}.", f"{self.key}["))


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment config with `section.key=value` overrides applied, then check it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = yaml.load(path.read_text(), Loader=_YamlLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML ({err})") from err
    parsed = [Override.parse(text) for text in overrides]
    if isinstance(raw, dict):  # anything else is refused below, naming the file
        raw = _with_overrides(raw, parsed)
    try:
        return config_from_dict(raw)
    except ConfigError as err:
        setters = [o for o in parsed if any(o.sets(key) for key in err.keys)]
        origin = f"--set {setters[-1].text}" if setters else str(path)
        raise ConfigError(f"{origin}: {err}", err.keys) from None


def config_from_dict(raw: Any) -> ExperimentConfig:
    """Build and check a config from plain data (as read from YAML): every value's type and
    range, then what depends on several keys (`check_consistency`)."""
    cfg = _build(ExperimentConfig, _with_teacher_contrastive(raw), "")
    check_consistency(cfg)
    return cfg


def apply_overrides(cfg: ExperimentConfig, overrides: Iterable[str]) -> ExperimentConfig:
    """A copy of `cfg` with `section.key=value` overrides; values are read as YAML."""
    parsed = [Override.parse(text) for text in overrides]
    return config_from_dict(_with_overrides(config_to_dict(cfg), parsed))


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """Plain nested dicts and lists, ready for YAML or JSON."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return plain(cfg)


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    """Write `cfg` as YAML that `load_config` reads back to an equal config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def builtin_config(name: str) -> Path:
    """Path of a config shipped with castseg, e.g. builtin_config("demo")."""
    path = BUILTIN_CONFIG_DIR / f"{name.removesuffix('.yaml')}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"no built-in config '{name}' (available: {', '.join(builtin_config_names())})"
        )
    return path


def builtin_config_names() -> list[str]:
    """Names of the configs shipped with castseg (the YAML files in castseg/configs/)."""
    return sorted(p.stem for p in BUILTIN_CONFIG_DIR.glob("*.yaml"))


def _with_overrides(raw: dict[str, Any], overrides: list[Override]) -> dict[str, Any]:
    """A copy of `raw` with each override's value at its key; a mapping given for a section
    merges into it."""
    raw = copy.deepcopy(raw)
    for override in overrides:
        *sections, last = override.key.split(".")
        node = raw
        for depth, part in enumerate(sections):
            if node.get(part) is None:  # a section left out or null (e.g. teacher.contrastive)
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                prefix = ".".join(sections[: depth + 1])
                raise ConfigError(
                    f"cannot set '{override.key}': '{prefix}' is a value, not a section"
                )
        value = override.value
        if isinstance(value, dict) and isinstance(node.get(last), dict):
            value = {**node[last], **value}
        node[last] = value
    return raw


def _with_teacher_contrastive(raw: Any) -> Any:
    """`raw` with the keys that teacher.contrastive leaves out taken from `contrastive`."""
    teacher = raw.get("teacher") if isinstance(raw, dict) else None
    pinned = teacher.get("contrastive") if isinstance(teacher, dict) else None
    if not isinstance(pinned, dict):
        return raw
    top = raw.get("contrastive")
    merged = {**(top if isinstance(top, dict) else {}), **pinned}
    return {**raw, "teacher": {**teacher, "contrastive": merged}}


def _build(cls: type, raw: Any, path: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if not isinstance(raw, dict):
        where = f"{path}: expected" if path else "expected"
        raise ConfigError(
            f"{where} a mapping with keys {', '.join(fields)}, got {_show(raw)}",
            (path,) if path else (),
        )
    known = ", ".join(fields)
    for key in raw:
        if key not in fields:
            raise ConfigError(
                f"unknown key '{_join(path, key)}' (known: {known})", (_join(path, key),)
            )
    hints = get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        key = _join(path, name)
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"missing key '{key}'", (key,))
            continue
        value = _coerce(raw[name], hints[name], key)
        check = f.metadata.get("check")
        if check is not None and value is not None and not check[1](value):
            raise ConfigError(f"{key}: expected {check[0]}, got {value!r}", (key,))
        values[name] = value
    return cls(**values)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, {} if value is None else value, key)  # an empty section is allowed
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in get_args(tp)):
            return value
    elif origin in (Union, types.UnionType):
        sections = [arm for arm in get_args(tp) if dataclasses.is_dataclass(arm)]
        if sections and isinstance(value, dict):  # an optional section: errors name its keys
            return _build(sections[0], value, key)
        # Try the arm of the value's own type first, so an int stays an int in `float | int`.
        for arm in sorted(get_args(tp), key=lambda a: a is not type(value)):
            try:
                return _coerce(value, arm, key)
            except ConfigError:
                continue
    elif origin is tuple:
        args = get_args(tp)
        variadic = len(args) == 2 and args[1] is Ellipsis
        if isinstance(value, list | tuple) and (variadic or len(value) == len(args)):
            arms = [args[0]] * len(value) if variadic else args
            return tuple(
                _coerce(v, a, f"{key}[{i}]")
                for i, (v, a) in enumerate(zip(value, arms, strict=True))
            )
    elif tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    elif (tp is type(None) and value is None) or type(value) is tp:
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {_show(value)}", (key,))


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        names = []
        for arm in get_args(tp):
            literal = get_origin(arm) is Literal
            names += [repr(a) for a in get_args(arm)] if literal else [_type_name(arm)]
        return " or ".join(names)
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} {_type_name(args[0])}"
    return "null" if tp is type(None) else tp.__name__


def _show(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)
