"""Count the operations that make the host wait for an accelerator, on any device.

On a GPU, reading a value on the host (`.item()`, `int(t)`, `float(t)`, `bool(t)`: the
`aten::_local_scalar_dense` op) and an output whose size depends on the data (`nonzero`, boolean
indexing, `masked_select`, `unique`, `repeat_interleave` without `output_size`) each stop the
host until the GPU has caught up. The same ops run on CPU, so a CPU run counts the syncs that a
GPU run would make: a count is not a timing and can be asserted in tests. Not counted: copies
to the CPU (`.cpu()`, `.tolist()`), which are no ops on a CPU tensor.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_ALWAYS = {
    "aten::_local_scalar_dense",
    "aten::nonzero",
    "aten::masked_select",
    "aten::_unique2",
    "aten::unique_dim",
    "aten::unique_consecutive",
}
_BOOL_INDEXED = {"aten::index", "aten::index_put_", "aten::index_put", "aten::_index_put_impl_"}


def _has_bool_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(
        isinstance(i, torch.Tensor) and i.dtype == torch.bool
        for i in (indices or ())
        if i is not None
    )


def _is_sync(func, args: tuple, kwargs: dict) -> bool:
    name = func._schema.name
    if name in _ALWAYS:
        return True
    if name in _BOOL_INDEXED:
        return _has_bool_index(args)
    if name == "aten::repeat_interleave":
        repeats_is_tensor = len(args) > 1 and isinstance(args[1], torch.Tensor)
        return repeats_is_tensor and kwargs.get("output_size") is None
    return False


class HostSyncCounter(TorchDispatchMode):
    """`with HostSyncCounter() as syncs: ...`; then `syncs.total` and `syncs.by_op`."""

    def __init__(self) -> None:
        super().__init__()
        self.by_op: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _is_sync(func, args, kwargs):
            self.by_op[func._schema.name] += 1
        return func(*args, **kwargs)

    @property
    def total(self) -> int:
        return sum(self.by_op.values())
