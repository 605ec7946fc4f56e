"""Rotary position embeddings, "rotate half" layout (GPT-NeoX / Llama / Qwen).

cos/sin are computed per position on the fly from the inverse frequencies in float32,
so any position (prefill or decode, any context length) costs the same and no table has
to be sized in advance. The interleaved layout and YaRN used by DeepSeek-V4 live with
that family. Each function takes the model's ``Kernels``; without, the reference.
"""

from __future__ import annotations

import torch

from codeagent.backend.kernels.dispatch import REFERENCE, Kernels
from codeagent.backend.layers.norm import rms_norm


def inverse_frequencies(dim: int, theta: float) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """positions [T] -> cos, sin [T, dim] (float32)."""
    freqs = positions.float()[:, None] * inv_freq.to(positions.device)[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, kernels: Kernels = REFERENCE
) -> torch.Tensor:
    """x [T, H, D]; cos, sin [T, D]. Computed in x's dtype after casting cos/sin, like the reference."""
    if kernels.triton is not None:
        return kernels.triton.apply_rotary(x, cos, sin)
    cos = cos[:, None, :].to(x.dtype)
    sin = sin[:, None, :].to(x.dtype)
    return x * cos + rotate_half(x) * sin


def norm_then_rotary(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    cos: torch.Tensor,
    sin: torch.Tensor,
    kernels: Kernels = REFERENCE,
) -> torch.Tensor:
    """Per-head RMSNorm, then rotary: x [T, heads * D] (may be a column slice of a fused
    projection), weight [D] -> [T, heads, D], as Qwen3 treats q and k. On CPU one native call
    instead of the ~8 ops of the two references."""
    if kernels.native is not None and kernels.native.fits_norm_rope(x, weight):
        return kernels.native.norm_rope(x, weight, cos, sin, eps)
    heads = x.view(x.shape[0], -1, weight.shape[0])  # [T, heads, D]
    return apply_rotary(rms_norm(heads, weight, eps, kernels), cos, sin, kernels)
