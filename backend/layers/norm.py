"""RMSNorm, computed in float32 and cast back, as the reference implementations do.

Float32 takes PyTorch's fused ``rms_norm`` (one op instead of six); other dtypes follow the
references' roundings step by step (normalise in float32, cast, then scale). On CPU the
native kernel does either in one pass (PyTorch's CPU ``rms_norm`` decomposes into five ops,
~30 us a call at decode sizes)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codeagent.backend.kernels.dispatch import native_ops, triton_ops, use_native, use_triton


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    if use_triton(x):
        return triton_ops().rms_norm(x, weight, eps)
    if use_native(x) and native_ops().fits_rms_norm(x, weight):
        return native_ops().rms_norm(x, weight, eps)
    if x.dtype == torch.float32 and (weight is None or weight.dtype == torch.float32):
        return F.rms_norm(x, (x.shape[-1],), weight, eps)  # one fused op; same math in float32
    dtype = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    h = h.to(dtype)
    return h if weight is None else weight * h


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)
