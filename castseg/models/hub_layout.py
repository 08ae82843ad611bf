"""The transformers models inside a castseg model, with their weights in the published layout.

transformers renames weights between versions (DINOv2's `attention.attention.query` became
`attention.q_proj` in 5.x) and converts the published (hub) names on `from_pretrained`, while
`save_pretrained` writes the published names back. So castseg stores each transformers model of
a checkpoint as `save_pretrained` writes it (`hub_state`) and loads it back through
`from_pretrained` of the transformers version that runs (`live_state`), by public API only:
a temporary folder holds the config and the safetensors weights in between.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import PretrainedConfig, PreTrainedModel

from castseg.models.pretrained import load_checked, quiet_transformers


def hub_models(model: nn.Module) -> dict[str, PreTrainedModel]:
    """The transformers models among `model`'s sub-modules that are not inside another one,
    by module path (e.g. {"encoder.backbone": Dinov2Backbone})."""
    found: dict[str, PreTrainedModel] = {}
    for name, module in model.named_modules():
        inside = any(name.startswith(f"{prefix}.") for prefix in found)
        if name and not inside and isinstance(module, PreTrainedModel):
            found[name] = module
    return found


def split_state(
    state: Mapping[str, Tensor], prefixes: list[str]
) -> tuple[dict[str, Tensor], dict[str, dict[str, Tensor]]]:
    """(the entries outside every prefix, {prefix: its entries without "prefix."})."""
    own: dict[str, Tensor] = {}
    parts: dict[str, dict[str, Tensor]] = {prefix: {} for prefix in prefixes}
    for key, value in state.items():
        prefix = next((p for p in prefixes if key.startswith(f"{p}.")), None)
        if prefix is None:
            own[key] = value
        else:
            parts[prefix][key[len(prefix) + 1 :]] = value
    return own, parts


@contextmanager
def _config_kept(config: PretrainedConfig) -> Iterator[None]:
    """Undo what `save_pretrained` records in the live config (architectures, dtype)."""
    saved = dict(vars(config))
    try:
        yield
    finally:
        vars(config).clear()
        vars(config).update(saved)


def hub_state(model: PreTrainedModel) -> dict[str, Tensor]:
    """`model`'s weights as `save_pretrained` writes them: published names, tied copies once."""
    with tempfile.TemporaryDirectory() as folder, quiet_transformers():
        with _config_kept(model.config):
            model.save_pretrained(folder)
        return {
            key: value
            for file in sorted(Path(folder).glob("*.safetensors"))
            for key, value in load_file(file).items()
        }


def live_state(
    model: PreTrainedModel, weights: Mapping[str, Tensor], where: str
) -> dict[str, Tensor]:
    """Published-layout `weights` for `model`, as its own `state_dict` names them.

    They are loaded by `type(model).from_pretrained` from a folder with `model`'s config, so
    transformers converts them as it converts a hub repository. Raises WeightsMismatchError
    naming `where` when they do not fit.
    """
    dtype = next(model.parameters()).dtype
    with tempfile.TemporaryDirectory() as folder, quiet_transformers():
        model.config.save_pretrained(folder)
        # safetensors refuses tensors that share memory (tied weights of a plain state_dict)
        tensors = {key: value.detach().clone().contiguous() for key, value in weights.items()}
        save_file(tensors, Path(folder) / "model.safetensors", metadata={"format": "pt"})
        loaded = load_checked(type(model), folder, where, dtype=dtype)
    return loaded.state_dict()
