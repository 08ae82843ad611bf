"""A memory bank of past pixel embeddings as extra negatives for L_pxl (paper Table 13: 10k).

The bank holds the strong-view embeddings z⁺ of earlier steps (the keys L_pxl contrasts with)
and their fused vectors ỹ, so that a negative can come from the batch or from the bank with the
same probability ∝ f(1 − ⟨ỹ_a, ỹ_q⟩). `EmbeddingMemoryBank.extend` appends the bank's S rows to
the batch's B·N pixels as one image of B·N + S pixels whose bank rows are never anchors; the
unchanged `sample_negatives`, `pixel_contrastive_loss` and `sampling_monitors` then draw from,
and contrast with, batch ∪ bank. A step uses the bank before pushing its own keys, so an
anchor's positive is never among its negatives.

The bank holds plain tensors, not module buffers: DDP would broadcast buffers from rank 0 every
step. Under DDP each rank keeps its own bank of the keys it computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class BankedBatch:
    """A batch's pixels followed by the bank's S rows, as one image of B·N + S pixels.

    z_weak: [1, B·N+S, D] anchors (bank rows zero); z_strong: [1, B·N+S, D] keys (bank rows
    are the stored unit embeddings, without gradient); y_tilde: [1, B·N+S, E]; valid:
    [1, B·N+S] bool, False on the bank rows. Negative index B·N + s is the bank's row s.
    """

    z_weak: Tensor
    z_strong: Tensor
    y_tilde: Tensor
    valid: Tensor
    batch_shape: tuple[int, int]

    @property
    def bank_rows(self) -> int:
        return self.valid.shape[1] - self.batch_shape[0] * self.batch_shape[1]

    def instance_ids(self, instance_ids: Tensor) -> Tensor:
        """[B, N] per-image region ids (`instance_id_map`) → [1, B·N+S] ids for this one image.

        Regions of different images get different ids; ignored pixels and the bank rows get −1,
        so a bank negative never counts as a false negative (it is from another image).
        """
        batch, pixels = self.batch_shape
        if tuple(instance_ids.shape) != (batch, pixels):
            raise ValueError(
                f"instance_ids must be [B, N] = {self.batch_shape}, got {tuple(instance_ids.shape)}"
            )
        stride = int(instance_ids.max().clamp(min=0)) + 1
        offsets = torch.arange(batch, device=instance_ids.device).unsqueeze(1) * stride
        ids = torch.where(instance_ids >= 0, instance_ids + offsets, -1).reshape(1, -1)
        return F.pad(ids, (0, self.bank_rows), value=-1)


class EmbeddingMemoryBank:
    """FIFO of the last `size` detached unit key embeddings [D] and their fused vectors ỹ [E].

    ỹ's length E = K + C + 1 is taken from the first push. Storage is float32 on the device of
    the latest push. `per_step` caps the rows one push keeps (a random subset); None keeps all
    (push draws a random order, so when more than `size` rows come at once a random `size`
    of them stay).
    """

    def __init__(self, size: int, dim: int, *, per_step: int | None = None) -> None:
        if size < 1:
            raise ValueError(f"memory bank size must be >= 1, got {size}")
        if dim < 1:
            raise ValueError(f"memory bank embedding dim must be >= 1, got {dim}")
        if per_step is not None and per_step < 1:
            raise ValueError(f"memory bank per_step must be >= 1 or None, got {per_step}")
        self.size = size
        self.dim = dim
        self.per_step = per_step
        self._keys: Tensor | None = None  # [size, D]
        self._probs: Tensor | None = None  # [size, E]
        self._next = 0  # ring position of the next write
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def keys(self) -> Tensor:
        """[S, D] stored unit embeddings, oldest first (S = len(self))."""
        return self._ordered(self._keys, self.dim)

    @property
    def probs(self) -> Tensor:
        """[S, E] their fused vectors ỹ, oldest first."""
        width = 0 if self._probs is None else self._probs.shape[1]
        return self._ordered(self._probs, width)

    @torch.no_grad()
    def push(
        self,
        z_strong: Tensor,
        y_tilde: Tensor,
        valid: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        """Store a step's keys: the rows of z_strong [B, N, D] and ỹ [B, N, E] where valid [B, N]
        (None: all), ℓ2-normalised and detached, the oldest rows overwritten when full.

        Rows with a non-finite entry are left out: one bad step must not poison later ones.
        """
        self._check(z_strong, y_tilde, valid)
        keys = F.normalize(z_strong.detach().float().reshape(-1, self.dim), dim=-1)
        probs = y_tilde.detach().float().reshape(keys.shape[0], -1)
        keep = keys.isfinite().all(1) & probs.isfinite().all(1)
        if valid is not None:
            keep &= valid.reshape(-1).to(keep.device)
        rows = keep.nonzero().squeeze(1)
        keys, probs = keys[rows], probs[rows]
        limit = min(self.size, self.per_step or self.size, keys.shape[0])
        order = torch.randperm(keys.shape[0], device=keys.device, generator=generator)[:limit]
        keys, probs = keys[order], probs[order]
        if self._keys is None or self._probs is None:
            self._keys = keys.new_zeros(self.size, self.dim)
            self._probs = probs.new_zeros(self.size, probs.shape[1])
        elif probs.shape[1] != self._probs.shape[1]:
            raise ValueError(
                f"y_tilde has E = {probs.shape[1]} entries per pixel but the memory bank holds "
                f"E = {self._probs.shape[1]}: one bank serves one model"
            )
        self._keys, self._probs = self._keys.to(keys.device), self._probs.to(keys.device)
        slots = (self._next + torch.arange(limit, device=keys.device)) % self.size
        self._keys[slots] = keys
        self._probs[slots] = probs
        self._next = (self._next + limit) % self.size
        self._count = min(self.size, self._count + limit)

    def extend(
        self, z_weak: Tensor, z_strong: Tensor, y_tilde: Tensor, valid: Tensor | None = None
    ) -> BankedBatch:
        """The batch (z_weak, z_strong [B, N, D], ỹ [B, N, E], valid [B, N] or None) followed by
        the bank's rows; see `BankedBatch`. An empty bank adds no rows."""
        self._check(z_strong, y_tilde, valid)
        if z_weak.shape != z_strong.shape:
            raise ValueError(
                f"z_weak {tuple(z_weak.shape)} and z_strong {tuple(z_strong.shape)} must match"
            )
        batch, pixels, _ = z_strong.shape
        if valid is None:
            valid = torch.ones(batch, pixels, dtype=torch.bool, device=z_strong.device)
        keys = self.keys.to(device=z_strong.device, dtype=z_strong.dtype)
        probs = self.probs.to(device=y_tilde.device, dtype=y_tilde.dtype)
        if not len(self):
            probs = y_tilde.new_zeros(0, y_tilde.shape[2])
        elif probs.shape[1] != y_tilde.shape[2]:
            raise ValueError(
                f"y_tilde has E = {y_tilde.shape[2]} entries per pixel but the memory bank holds "
                f"E = {probs.shape[1]}: one bank serves one model"
            )
        no_anchors = z_weak.new_zeros(len(self), self.dim)
        return BankedBatch(
            z_weak=torch.cat([z_weak.reshape(-1, self.dim), no_anchors])[None],
            z_strong=torch.cat([z_strong.reshape(-1, self.dim), keys])[None],
            y_tilde=torch.cat([y_tilde.reshape(batch * pixels, -1), probs])[None],
            valid=F.pad(valid.reshape(1, -1), (0, len(self)), value=False),
            batch_shape=(batch, pixels),
        )

    def state_dict(self) -> dict[str, Any]:
        """Plain data (tensors and ints) to save the bank in a checkpoint, oldest rows first."""
        return {
            "size": self.size,
            "dim": self.dim,
            "per_step": self.per_step,
            "keys": self.keys.cpu(),
            "probs": self.probs.cpu(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> EmbeddingMemoryBank:
        """The bank that `state_dict` saved, on the CPU (later pushes move nothing back)."""
        bank = cls(state["size"], state["dim"], per_step=state["per_step"])
        keys, probs = state["keys"], state["probs"]
        if keys.shape[0]:
            bank._keys = keys.new_zeros(bank.size, bank.dim)
            bank._probs = probs.new_zeros(bank.size, probs.shape[1])
            bank._keys[: keys.shape[0]] = keys
            bank._probs[: keys.shape[0]] = probs
            bank._count = keys.shape[0]
            bank._next = keys.shape[0] % bank.size
        return bank

    def _ordered(self, store: Tensor | None, width: int) -> Tensor:
        if store is None:
            return torch.zeros(0, width)
        if self._count < self.size:
            return store[: self._count]
        return torch.cat([store[self._next :], store[: self._next]])

    def _check(self, z_strong: Tensor, y_tilde: Tensor, valid: Tensor | None) -> None:
        if z_strong.dim() != 3 or z_strong.shape[2] != self.dim:
            raise ValueError(
                f"z_strong must be [B, N, D] with D = {self.dim} (the bank's dim), "
                f"got {tuple(z_strong.shape)}"
            )
        if y_tilde.dim() != 3 or y_tilde.shape[:2] != z_strong.shape[:2]:
            raise ValueError(
                f"y_tilde must be [B, N, E] with the B, N of z_strong {tuple(z_strong.shape)}, "
                f"got {tuple(y_tilde.shape)}"
            )
        if valid is not None and valid.shape != z_strong.shape[:2]:
            raise ValueError(
                f"valid must be [B, N] = {tuple(z_strong.shape[:2])}, got {tuple(valid.shape)}"
            )
