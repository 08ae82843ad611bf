"""Dot products of anchors with indexed rows, as sparse products: no [M, R, D] gather."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor


def _pattern(index: Tensor, values: Tensor, columns: int) -> Tensor:
    """Sparse CSR [M, columns] with row m holding `values[m]` at columns `index[m]`."""
    rows, per_row = index.shape
    crow = torch.arange(0, rows * per_row + 1, per_row, device=index.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(
            crow, index.reshape(-1), values.reshape(-1), (rows, columns), check_invariants=False
        )


class _GatheredDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, anchors: Tensor, bank: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(anchors, bank, index)
        pattern = _pattern(index, anchors.new_zeros(index.shape), bank.shape[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            dots = torch.sparse.sampled_addmm(pattern, anchors, bank.T, beta=0.0)
        return dots.values().view(index.shape)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        anchors, bank, index = ctx.saved_tensors
        grad = grad.contiguous()
        grad_anchors = grad_bank = None
        if ctx.needs_input_grad[0]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                grad_anchors = _pattern(index, grad, bank.shape[0]) @ bank
        if ctx.needs_input_grad[1]:
            rows = torch.arange(index.shape[0], device=index.device)
            rows = rows.repeat_interleave(index.shape[1])
            transposed = torch.sparse_coo_tensor(
                torch.stack([index.reshape(-1), rows]),
                grad.reshape(-1),
                (bank.shape[0], index.shape[0]),
                check_invariants=False,
            )
            grad_bank = torch.sparse.mm(transposed, anchors)
        return grad_anchors, grad_bank, None


def gathered_dot(anchors: Tensor, bank: Tensor, index: Tensor) -> Tensor:
    """out[m, r] = ⟨anchors[m], bank[index[m, r]]⟩, differentiable in anchors and bank.

    Args:
        anchors: [M, D]; bank: [M', D]; index: [M, R] long into the rows of bank.

    Returns:
        [M, R]. The forward pass is a sampled dense-dense product on the sparsity pattern of
        `index` (SDDMM) and the backward pass two sparse-dense products, so memory stays
        O(M·R + M·D) rather than the O(M·R·D) of `bank[index]`, and no M × M' matrix is built.
    """
    if index.dtype != torch.long:
        index = index.long()
    if index.shape[1] > bank.shape[0]:
        # More slots per row than rows to index: torch's sparse CSR kernels refuse such a
        # pattern, and the gather is small anyway.
        return torch.einsum("md,mrd->mr", anchors, bank[index])
    return _GatheredDot.apply(anchors, bank, index.contiguous())
