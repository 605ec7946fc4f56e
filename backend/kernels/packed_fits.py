"""Whether a product or a MoE layer fits the native packed kernels (``native_packed``): CPU
tensors, decode-sized (at most ``MAX_ROWS`` token rows, ``MAX_PAIRS`` token-expert pairs),
activations float32 or bfloat16, K in whole groups (16 inputs for FP8, 32 for FP4), weights and
scales in the release layouts (``packed_weights``); INT6 weights as ``native_int6`` says (K a
multiple of 128). Anything else goes to the torch references. The limits are native_packed.c's
and native_int6.c's.
"""

from __future__ import annotations

import torch

from codeagent.backend.kernels import native_int6
from codeagent.backend.packed_weights import PackedExperts, PackedWeight
from codeagent.backend.quant import FP4_GROUP, FP8_BLOCK
from codeagent.backend.quant_int6 import INT6_BLOCK

MAX_ROWS = 64  # native_packed.c's MAX_ROWS
MAX_PAIRS = 512  # native_packed.c's MAX_PAIRS
ACTIVATIONS = {torch.float32: 0, torch.bfloat16: 1}
SCALES = (torch.float32, torch.uint8, torch.float8_e8m0fnu)
FP4_CODES = (torch.uint8, torch.int8, torch.float4_e2m1fn_x2)


def _fits_x(x: torch.Tensor, k: int, group: int) -> bool:
    return (
        x.dim() == 2
        and x.dtype in ACTIVATIONS
        and x.device.type == "cpu"
        and 0 < x.shape[0] <= MAX_ROWS
        and x.shape[1] == k
        and k % group == 0
    )


def fits_linear_fp8(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> bool:
    """Whether ``linear_fp8`` takes this product: CPU, decode-sized, K a multiple of 16, block
    scales of the release layout."""
    if weight.dim() != 2:
        return False
    n, k = weight.shape
    return (
        _fits_x(x, k, 16)
        and weight.dtype == torch.float8_e4m3fn
        and weight.device.type == "cpu"
        and weight.is_contiguous()
        and scale.dtype in SCALES
        and tuple(scale.shape) == (-(-n // FP8_BLOCK), -(-k // FP8_BLOCK))
    )


def fits_linear_fp4(x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor) -> bool:
    """Whether ``linear_fp4`` takes this product: CPU, decode-sized, a scale per row and 32 inputs."""
    if packed.dim() != 2:
        return False
    n, half = packed.shape
    return (
        _fits_x(x, 2 * half, FP4_GROUP)
        and packed.dtype in FP4_CODES
        and packed.device.type == "cpu"
        and packed.is_contiguous()
        and scale.dtype in SCALES
        and tuple(scale.shape) == (n, 2 * half // FP4_GROUP)
    )


def fits_linear(x: torch.Tensor, w: PackedWeight) -> bool:
    if w.format == "int6":
        return _fits_x(x, w.shape[1], INT6_BLOCK) and native_int6.fits_weight(w.weight, w.scale)
    if w.format == "fp8":
        return fits_linear_fp8(x, w.weight, w.scale)
    return fits_linear_fp4(x, w.weight, w.scale)


def fits_moe_packed(x: torch.Tensor, w13: PackedExperts, w2: PackedExperts, ids: torch.Tensor) -> bool:
    """Whether ``moe_packed`` takes this layer: CPU, decode-sized, both projections in one
    format, widths in whole groups (16 inputs for FP8, 32 for FP4)."""
    experts, rows, hidden = w13.shape
    group = 16 if w13.format == "fp8" else FP4_GROUP
    return (
        _fits_x(x, hidden, group)
        and w2.format == w13.format
        and w2.shape == (experts, hidden, rows // 2)
        and (rows // 2) % group == 0
        and ids.numel() <= MAX_PAIRS
        and all(
            t.device.type == "cpu" and t.is_contiguous() and s.dtype in SCALES
            for t, s in ((w13.weight, w13.scale), (w2.weight, w2.scale))
        )
    )


def fits_dequantize(w: PackedWeight | PackedExperts, dtype: torch.dtype) -> bool:
    """Whether ``dequantize`` / ``dequantize_expert`` decode ``w`` to ``dtype``."""
    if w.format == "int6":
        return dtype in ACTIVATIONS and native_int6.fits_weight(w.weight, w.scale)
    k = w.shape[-1]
    return (
        dtype in ACTIVATIONS
        and w.weight.device.type == "cpu"
        and w.weight.is_contiguous()
        and w.scale.dtype in SCALES
        and k % (16 if w.format == "fp8" else FP4_GROUP) == 0
    )
