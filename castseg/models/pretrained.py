"""Loading transformers models whose weights must all fit: no layer silently left at random.

transformers' `from_pretrained` loads what fits and initialises the rest randomly, saying so in a
log line only. `load_checked` asks for its loading info and turns any missing, unexpected or
mis-shaped key into a `WeightsMismatchError` that names the folder and a few of the keys, in one
line (transformers' own table of the keys is not printed). Weights that transformers itself is
told to drop (`_keys_to_ignore_on_load_unexpected`, such as the video-memory modules of a SAM2
video checkpoint loaded as the image model) are not reported by it, so they pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from transformers import PreTrainedModel
from transformers.utils import logging as hf_logging

ModelT = TypeVar("ModelT", bound=PreTrainedModel)
_SHOWN_KEYS = 3  # key names an error lists before "..."


class WeightsMismatchError(ValueError):
    """Weights that do not fit a model: keys missing, unexpected or of another shape."""


def key_list(keys: Iterable[str]) -> str:
    """The count and the first few names, sorted: 'N keys (a, b, c, ...)'."""
    names = sorted(keys)
    shown = ", ".join(names[:_SHOWN_KEYS]) + (", ..." if len(names) > _SHOWN_KEYS else "")
    return f"{len(names)} key{'s' if len(names) != 1 else ''} ({shown})"


def describe_mismatch(
    missing: Iterable[str] = (),
    unexpected: Iterable[str] = (),
    misshaped: Iterable[tuple[str, Any, Any]] = (),
) -> str:
    """One line naming what does not fit, or "" when everything does.

    misshaped: (key, shape in the weights, shape in the model) triples.
    """
    missing, unexpected, misshaped = list(missing), list(unexpected), list(misshaped)
    parts = []
    if missing:
        parts.append(f"missing {key_list(missing)}")
    if unexpected:
        parts.append(f"unexpected {key_list(unexpected)}")
    if misshaped:
        key, saved, wanted = sorted(misshaped, key=lambda item: item[0])[0]
        parts.append(
            f"{len(misshaped)} of another shape, e.g. {key}: {tuple(saved)} in the weights, "
            f"{tuple(wanted)} in the model"
        )
    return "; ".join(parts)


def load_checked(model_class: type[ModelT], source: str | Path, where: str, **kwargs) -> ModelT:
    """`model_class.from_pretrained(source, **kwargs)` that fails unless every weight fits.

    where: what names the weights in the error (e.g. "the encoder '/data/dinov2'").

    Raises WeightsMismatchError naming `where` and the keys that are missing, unexpected or of
    another shape.
    """
    # castseg reports what does not fit itself, in one line: no table of keys from transformers
    with quiet_transformers(progress_bars=True):
        model, info = model_class.from_pretrained(
            source, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
        )
    problems = describe_mismatch(
        info.get("missing_keys", ()),
        info.get("unexpected_keys", ()),
        info.get("mismatched_keys", ()),
    )
    details = "; ".join(filter(None, [problems, *map(str, info.get("error_msgs", ()))]))
    if details:
        raise WeightsMismatchError(
            f"{where}: the weights do not fit {model_class.__name__}: {details}"
        )
    return model


@contextmanager
def quiet_transformers(progress_bars: bool = False) -> Iterator[None]:
    """transformers' logging at error level only, and without progress bars unless
    `progress_bars` (then they stay as they are)."""
    verbosity = hf_logging.get_verbosity()
    hide_bars = not progress_bars and hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    if hide_bars:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if hide_bars:
            hf_logging.enable_progress_bar()
