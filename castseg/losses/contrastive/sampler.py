"""Instance-aware negative sampling without the quadratic score matrix (§3.2, Tables 3 and 11)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from castseg.losses.precision import float32

SamplingMode = Literal["fusion", "mask_only", "class_only", "uniform"]
ScoreVariant = Literal["identity", "square", "sqrt"]
MODES: tuple[str, ...] = ("fusion", "mask_only", "class_only", "uniform")
SCORES: tuple[str, ...] = ("identity", "square", "sqrt")

# Anchors whose expected acceptance rate is below this go straight to exact row sampling.
_MIN_ACCEPTANCE = 0.05
_MAX_ROUNDS = 12


def sample_negatives(
    y_tilde: Tensor,
    num_negatives: int,
    *,
    mode: SamplingMode = "fusion",
    score: ScoreVariant = "identity",
    num_mask_channels: int | None = None,
    generator: torch.Generator | None = None,
    num_anchors: int | None = None,
) -> Tensor:
    """Draw R negatives per anchor pixel from the whole batch, ∝ s_deb = max(0, 1 − ⟨ỹ_a, ỹ_q⟩).

    Args:
        y_tilde: [B, N, E] ℓ2-normalised fused vectors (see `fused_pseudo_probabilities`).
        num_negatives: R ≥ 1, negatives per anchor, drawn independently (with replacement).
        mode: "fusion" uses ỹ as given; "mask_only" / "class_only" replace the class / mask part
            of ỹ by a uniform vector before scoring (needs `num_mask_channels` = K, the length of
            the mask part); "uniform" makes every other pixel equally likely.
        score: transform of s_deb: "identity", "square" (s²) or "sqrt" (√s).
        num_mask_channels: K, the number of leading entries of ỹ that are the mask part.
        generator: source of randomness; the same generator state gives the same draw.
        num_anchors: only the first `num_anchors` of the B·N flat pixels are anchors (e.g. when
            memory-bank rows are appended as candidates); the other rows are candidates only and
            their output rows are 0. None: every pixel is an anchor.

    Returns:
        [B, N, R] long: flat indices into the B·N pixels of the batch; never the anchor itself.

    Method: rejection sampling with a uniform proposal over the other B·N − 1 pixels. A
    candidate q is accepted with probability f(s_deb(a, q)) ∈ [0, 1], so accepted candidates are
    exact i.i.d. draws from f(s_deb(a, ·)) / Z_a. Each round proposes R candidates per pending
    anchor; with mean acceptance α the expected cost is O(B·N·R·E / α) time, and candidates are
    scored in chunks so peak extra memory is O(B·N·(R + E)). The B·N × B·N score matrix is never
    built. Anchors with a low acceptance rate (exactly known for "identity": α_a = (B·N −
    ⟨ỹ_a, Σ_q ỹ_q⟩) / (B·N − 1)) and anchors still short after a fixed number of rounds are
    finished by exact categorical sampling over their own score row, computed a chunk of rows
    at a time. An anchor whose scores are all zero (every pixel identical to it) gets uniform
    negatives.
    """
    if y_tilde.dim() != 3:
        raise ValueError(f"y_tilde must be [B, N, E], got shape {tuple(y_tilde.shape)}")
    if num_negatives < 1:
        raise ValueError(f"num_negatives (R) must be >= 1, got {num_negatives}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    batch, pixels, _ = y_tilde.shape
    total = batch * pixels
    if total < 2:
        raise ValueError(
            f"need at least 2 pixels in the batch to sample negatives, y_tilde is "
            f"{tuple(y_tilde.shape)}"
        )
    anchors = total if num_anchors is None else num_anchors
    if not 0 <= anchors <= total:
        raise ValueError(f"num_anchors must lie in [0, B·N = {total}], got {num_anchors}")
    device = y_tilde.device
    if mode == "uniform":
        out = torch.zeros(total, num_negatives, dtype=torch.long, device=device)
        out[:anchors] = _uniform_others(total, num_negatives, device, generator)[:anchors]
        return out.view(batch, pixels, num_negatives)
    with float32(y_tilde):  # scores near 0 decide acceptance: not in 16 bits
        y = _apply_mode(y_tilde.detach().float().reshape(total, -1), mode, num_mask_channels)
        out = _rejection_sample(y, num_negatives, score, generator, anchors)
    return out.view(batch, pixels, num_negatives)


def _apply_mode(y: Tensor, mode: str, num_mask_channels: int | None) -> Tensor:
    if mode == "fusion":
        return y
    dims = y.shape[1]
    if num_mask_channels is None or not 0 < num_mask_channels < dims:
        raise ValueError(
            f"mode {mode!r} needs num_mask_channels = K with 0 < K < E = {dims}, "
            f"got {num_mask_channels}"
        )
    mask_part, class_part = y[:, :num_mask_channels], y[:, num_mask_channels:]
    if mode == "mask_only":
        class_part = torch.full_like(class_part, 1.0 / class_part.shape[1])
    else:
        mask_part = torch.full_like(mask_part, 1.0 / mask_part.shape[1])
    # Parts are rescaled by their own norms so that the uniform part does not dominate.
    parts = [torch.nn.functional.normalize(p, dim=1) for p in (mask_part, class_part)]
    return torch.nn.functional.normalize(torch.cat(parts, dim=1), dim=1)


def _score(dots: Tensor, score: str) -> Tensor:
    s = (1.0 - dots).clamp_(0.0, 1.0)
    if score == "square":
        return s.square_()
    if score == "sqrt":
        return s.sqrt_()
    return s


def _uniform_others(
    total: int, count: int, device: torch.device, generator: torch.Generator | None
) -> Tensor:
    """[total, count] uniform indices in [0, total) that never equal their row index."""
    anchors = torch.arange(total, device=device).unsqueeze(1)
    return _shift_past_anchor(
        torch.randint(0, total - 1, (total, count), device=device, generator=generator), anchors
    )


def _shift_past_anchor(candidates: Tensor, anchors: Tensor) -> Tensor:
    """Map uniform draws from [0, total-1) onto [0, total) minus the anchor."""
    return candidates + (candidates >= anchors).long()


def _rejection_sample(
    y: Tensor, count: int, score: str, generator: torch.Generator | None, anchors: int
) -> Tensor:
    total, dims = y.shape
    device = y.device
    out = torch.zeros(total, count, dtype=torch.long, device=device)
    filled = torch.zeros(total, dtype=torch.long, device=device)
    filled[anchors:] = count  # candidates only: nothing to draw
    # Exact expected acceptance of the identity score: Σ_{q≠a} (1 − ⟨ỹ_a, ỹ_q⟩) / (total − 1).
    acceptance = None
    if score == "identity":
        acceptance = (total - (y[:anchors] @ y.sum(0))) / (total - 1)
    pending = torch.arange(anchors, device=device)
    if acceptance is not None:
        pending = pending[acceptance >= _MIN_ACCEPTANCE]
    chunk = max(1, anchors * (count + dims) // (count * dims))
    for _ in range(_MAX_ROUNDS):
        if pending.numel() == 0:
            break
        for rows in pending.split(chunk):
            _propose(y, rows, out, filled, score, generator)
        pending = pending[filled[pending] < count]
    short = (filled < count).nonzero().squeeze(1)
    _exact_rows(y, short, out, filled, score, generator)
    return out


def _propose(
    y: Tensor,
    rows: Tensor,
    out: Tensor,
    filled: Tensor,
    score: str,
    generator: torch.Generator | None,
) -> None:
    """One round of rejection sampling for `rows`: R uniform proposals each, the accepted ones
    written to the rows' next free slots (in proposal order) without a host sync."""
    total = y.shape[0]
    count = out.shape[1]
    candidates = _shift_past_anchor(
        torch.randint(0, total - 1, (rows.numel(), count), device=y.device, generator=generator),
        rows.unsqueeze(1),
    )
    dots = torch.einsum("ne,nre->nr", y[rows], y[candidates])
    accept = torch.rand(dots.shape, device=y.device, generator=generator) < _score(dots, score)
    slot = filled[rows].unsqueeze(1) + accept.long().cumsum(1) - 1
    # Rejected or surplus proposals go to a spare last column, which is dropped.
    slot = torch.where(accept & (slot < count), slot, count)
    spare = torch.cat([out[rows], out.new_zeros(rows.numel(), 1)], dim=1)
    out[rows] = spare.scatter_(1, slot, candidates)[:, :count]
    filled[rows] = (filled[rows] + accept.sum(1)).clamp_(max=count)


def _exact_rows(
    y: Tensor,
    rows: Tensor,
    out: Tensor,
    filled: Tensor,
    score: str,
    generator: torch.Generator | None,
) -> None:
    """Fill the remaining slots of `rows` by categorical sampling over their full score rows.

    Slot j ≥ filled of a row takes its (j − filled)-th draw; no per-row host sync.
    """
    dims = y.shape[1]
    count = out.shape[1]
    slots = torch.arange(count, device=y.device)
    for part in rows.split(count + dims):
        weights = _score(y[part] @ y.T, score)
        local = torch.arange(part.numel(), device=y.device)
        weights[local, part] = 0.0
        # A row whose scores are all zero (every pixel identical to it) is drawn uniformly.
        weights.masked_fill_((weights.sum(1) <= 0).unsqueeze(1), 1.0)
        weights[local, part] = 0.0
        draws = torch.multinomial(weights, count, replacement=True, generator=generator)
        start = filled[part].unsqueeze(1)
        from_draws = draws.gather(1, (slots - start).clamp_(min=0))
        out[part] = torch.where(slots >= start, from_draws, out[part])
        filled[part] = count
