"""DeepSeek-V4's norms, as both of its references compute them.

``rms_norm`` normalises in float32 and multiplies by its float32 weight before casting
back (``layers/norm.py`` casts first, as Qwen's references do); ``unweighted_rms_norm`` is
the per-head query norm and the mHC input norm: x times the rsqrt cast to x's dtype. Both
run the Triton kernel (``kernels/norm.py``, its two other roundings) or the native CPU one
(``kernels/native_v4.c``, the same roundings, its own sum of squares) where the model's kernels
say so.
"""

from __future__ import annotations

import torch

from codeagent.backend.kernels.dispatch import REFERENCE, Kernels


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, kernels: Kernels = REFERENCE) -> torch.Tensor:
    """x [..., D], weight [D] float32 -> [..., D] in x's dtype."""
    if kernels.triton is not None:
        return kernels.triton.rms_norm_weight_first(x, weight, eps)
    if kernels.v4 is not None and kernels.v4.fits_norm(x, weight):
        return kernels.v4.rms_norm(x, weight, eps)
    h = x.float()
    h = h * torch.rsqrt(h.square().mean(-1, keepdim=True) + eps)
    return (weight.float() * h).to(x.dtype)


def unweighted_rms_norm(x: torch.Tensor, eps: float, kernels: Kernels = REFERENCE) -> torch.Tensor:
    """x [..., D] -> [..., D] in x's dtype."""
    if kernels.triton is not None:
        return kernels.triton.unweighted_rms_norm(x, eps)
    if kernels.v4 is not None and kernels.v4.fits_norm(x, None):
        return kernels.v4.rms_norm(x, None, eps)
    return x * torch.rsqrt(x.float().square().mean(-1, keepdim=True) + eps).to(x.dtype)
