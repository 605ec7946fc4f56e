"""DeepSeek-V4's rotary embedding.

RoPE rotates only the last ``r`` channels of a head, in *interleaved* pairs (channels 2i
and 2i+1), unlike the rotate-half layout of ``layers/rotary.py``. cos/sin stay in float32
and the rotation runs in float32 before casting back, as DeepSeek's inference code does
with complex numbers (transformers rounds cos/sin to the activation dtype first; the two
agree exactly in float32). YaRN blends interpolated and original frequencies with a
linear ramp between the beta_fast and beta_slow correction dims; it never scales cos/sin
unless a config names an attention factor. The rotation runs through the model's kernels
(``Kernels``; without, the reference).
"""

from __future__ import annotations

import math

import torch

from codeagent.backend.kernels.dispatch import REFERENCE, Kernels
from codeagent.backend.models.deepseek_v4.config import RopeSpec


def inverse_frequencies(spec: RopeSpec) -> torch.Tensor:
    """One frequency per rotated pair: [r / 2] float32."""
    wavelengths = spec.theta ** (torch.arange(0, spec.dim, 2, dtype=torch.float32) / spec.dim)
    if spec.yarn_factor == 1.0 or spec.original_max_position <= 0:
        return 1.0 / wavelengths
    low, high = _correction_range(spec)
    ramp = torch.clamp((torch.arange(spec.dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    kept = 1 - ramp  # share of the original frequency, per pair
    return 1.0 / (spec.yarn_factor * wavelengths) * (1 - kept) + 1.0 / wavelengths * kept


def _correction_range(spec: RopeSpec) -> tuple[float, float]:
    def dim_for(rotations: float) -> float:
        turns = spec.original_max_position / (rotations * 2 * math.pi)
        return spec.dim * math.log(turns) / (2 * math.log(spec.theta))

    low = max(math.floor(dim_for(spec.beta_fast)), 0)
    high = min(math.ceil(dim_for(spec.beta_slow)), spec.dim - 1)
    return low, (high + 0.001 if low == high else high)


def rope_cos_sin(
    positions: torch.Tensor, inv_freq: torch.Tensor, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """positions [T] -> cos, sin [T, r] float32, each pair's value repeated for both channels."""
    angles = positions.float()[:, None] * inv_freq.to(positions.device)[None, :]  # [T, r/2]
    cos = (angles.cos() * scale).repeat_interleave(2, dim=-1)
    sin = (angles.sin() * scale).repeat_interleave(2, dim=-1)
    return cos, sin


def apply_interleaved_rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, kernels: Kernels = REFERENCE
) -> torch.Tensor:
    """Rotate the last r channels of x [..., D] pairwise; cos, sin broadcast to [..., r].

    Pass ``-sin`` to rotate back (the attention output's conjugate rotation)."""
    if kernels.triton is not None and x.dim() in (2, 3) and cos.shape[0] == x.shape[0]:
        return kernels.triton.apply_interleaved_rope(x, cos, sin)
    if kernels.v4 is not None and kernels.v4.fits_rope(x, cos):
        return kernels.v4.interleaved_rope(x, cos, sin)
    r = cos.shape[-1]
    nope, rope = x[..., :-r], x[..., -r:].float()
    pairs = rope.unflatten(-1, (-1, 2))  # [..., r/2, 2]
    swapped = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    return torch.cat((nope, (rope * cos + swapped * sin).to(x.dtype)), dim=-1)
