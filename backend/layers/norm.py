"""RMSNorm, computed in float32 and cast back, as the reference implementations do.

Float32 takes PyTorch's fused ``rms_norm`` (one op instead of six); other dtypes follow the
references' roundings step by step (normalise in float32, cast, then scale). On CPU the
native kernel does either in one pass (PyTorch's CPU ``rms_norm`` decomposes into five ops;
``docs/bench/cpu-choices.md``). ``add_rms_norm`` adds a sublayer's output to the residual
stream and normalises the sum, one Triton pass for both on a GPU and one native call on CPU
(the torch path is the kernels' reference). Each function takes the model's ``Kernels``; without, the reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codeagent.backend.kernels.dispatch import REFERENCE, Kernels


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor | None, eps: float, kernels: Kernels = REFERENCE
) -> torch.Tensor:
    """x [..., D], weight [D] or None -> [..., D] in x's dtype."""
    if kernels.triton is not None:
        return kernels.triton.rms_norm(x, weight, eps)
    if kernels.native is not None and kernels.native.fits_rms_norm(x, weight):
        return kernels.native.rms_norm(x, weight, eps)
    if x.dtype == torch.float32 and (weight is None or weight.dtype == torch.float32):
        return F.rms_norm(x, (x.shape[-1],), weight, eps)  # one fused op; same math in float32
    dtype = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    h = h.to(dtype)
    return h if weight is None else weight * h


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float, kernels: Kernels = REFERENCE
) -> tuple[torch.Tensor, torch.Tensor]:
    """x, residual [T, D] -> (RMSNorm(residual + x), residual + x), the sum in x's dtype."""
    if kernels.triton is not None:
        return kernels.triton.add_rms_norm(x, residual, weight, eps)
    if kernels.native is not None and kernels.native.fits_rms_norm(x, weight) and residual.dtype == x.dtype:
        return kernels.native.add_rms_norm(x, residual, weight, eps)
    summed = residual + x
    return rms_norm(summed, weight, eps, kernels), summed


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor, kernels: Kernels = REFERENCE) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps, kernels)
