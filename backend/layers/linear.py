"""Linear layers whose weights are allocated uninitialised (the loader fills them), so
building a model costs no time and no memory beyond the weights themselves."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codeagent.backend.kernels.dispatch import REFERENCE, Kernels


class Linear(nn.Module):
    def __init__(
        self, in_features: int, out_features: int, dtype: torch.dtype, device: torch.device | str
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(
            torch.empty(out_features, in_features, dtype=dtype, device=device), requires_grad=False
        )

    def forward(self, x: torch.Tensor, kernels: Kernels = REFERENCE) -> torch.Tensor:
        return linear(x, self.weight, kernels)


def linear(x: torch.Tensor, weight: torch.Tensor, kernels: Kernels = REFERENCE) -> torch.Tensor:
    """``F.linear`` without bias; decode-sized CPU products run the native kernel."""
    if _native_fits(x, weight, kernels):
        return kernels.native.linear(x, weight)  # type: ignore[union-attr]
    return F.linear(x, weight)


def _native_fits(x: torch.Tensor, weight: torch.Tensor, kernels: Kernels) -> bool:
    """Whether the native kernel takes this product: 1 to 3 rows of bfloat16 on CPU. In float32
    the BLAS streams a large weight at least as fast, and from 4 rows of bfloat16 on (AMX /
    AVX512-BF16) it is faster (the timings: ``docs/bench/cpu-choices.md``)."""
    return (
        kernels.native is not None
        and x.dim() == 2
        and x.dtype == torch.bfloat16
        and x.shape[0] < 4
        and kernels.native.fits_linear(x, weight)
    )


def empty_param(*shape: int, dtype: torch.dtype, device: torch.device | str) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape, dtype=dtype, device=device), requires_grad=False)


def head_logits(h: torch.Tensor, weight: torch.Tensor, kernels: Kernels = REFERENCE) -> torch.Tensor:
    """h [N, hidden] -> logits [N, vocab] through ``weight`` [vocab, hidden].

    Decode-sized products on CPU run the native kernel where it takes them; otherwise, for 8
    to 32 rows on CPU, the BLAS's tall-skinny product ``weight @ h.T`` beats the linear kernel,
    which turns compute-bound there (``docs/bench/cpu-choices.md``); elsewhere the plain linear."""
    if _native_fits(h, weight, kernels):
        return kernels.native.linear(h, weight)  # type: ignore[union-attr]
    if h.device.type == "cpu" and 8 <= h.shape[0] <= 32:
        return torch.mm(weight, h.t()).t()
    return F.linear(h, weight)
