"""DeepSeek-V4 release weight formats: FP8 e4m3 with 128x128 block scales, FP4 e2m1 experts.

As DeepSeek's inference code and ``quantization_config`` (``fmt: e4m3``,
``scale_fmt: ue8m0``, ``weight_block_size: [128, 128]``, ``expert_dtype: fp4``) describe them:

- FP8: ``X.weight`` float8_e4m3fn [out, in] and ``X.scale`` [ceil(out/128), ceil(in/128)],
  one scale per 128x128 block; value = e4m3 x scale of its block. Dense projections
  (attention's wq_a, wq_b, wkv, wo_a, wo_b, the indexer's wq_b, the shared expert).
- FP4: ``X.weight`` int8 [out, in/2], two e2m1 codes per byte (the even input in the low
  nibble, as in the OCP MX format and torch's ``float4_e2m1fn_x2``), and ``X.scale``
  [out, in/32], one scale per 32 inputs; value = e2m1 x scale. An e2m1 code is a sign bit
  and a magnitude index into {0, 0.5, 1, 1.5, 2, 3, 4, 6}. Routed experts.
- Scales are UE8M0, a power of two stored as its biased exponent: ``float8_e8m0fnu`` as
  released, or raw ``uint8`` exponents; float32 scales (``weight_scale_inv`` checkpoints)
  are taken as they are.

Routed experts can stay packed in memory (``packed_weights.PackedExperts``, on by default for quantized
checkpoints; ``CODEAGENT_KEEP_QUANTIZED=0`` dequantizes them at load): FP4 codes and FP8
values as released, scales as UE8M0 exponent bytes (or float32 where the checkpoint has
float scales), one per row and group of inputs, so a layer's w1 and w3 fuse by rows.
The fused-MoE kernel decodes them inside its GEMM tiles; the torch reference decodes one
expert at a time (``PackedExperts.expert``), only the experts a step routes to. Every
other quantized weight is dequantized once, at load time, into the model dtype
(``dequantizing``). ``quantize_fp8`` and ``quantize_fp4`` write the same formats
(smallest power-of-two scale that fits, round to nearest) for tests and small
release-layout checkpoints.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Iterable, Iterator

import torch

FP8_BLOCK = 128
FP4_GROUP = 32
E2M1_MAGNITUDES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
E2M1_MIDPOINTS = tuple((a + b) / 2 for a, b in itertools.pairwise(E2M1_MAGNITUDES))
E2M1_MAX = 6.0
E4M3_MAX = 448.0
FP4_STORAGE = (torch.int8, torch.uint8, torch.float4_e2m1fn_x2)
SCALE_SUFFIXES = (".weight_scale_inv", ".weight_scale", ".scale")
KEEP_ENV = "CODEAGENT_KEEP_QUANTIZED"
YES, NO = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def keep_quantized_default() -> bool:
    """``CODEAGENT_KEEP_QUANTIZED``: 1 (the default) keeps quantized routed experts packed, 0
    dequantizes them at load."""
    value = os.environ.get(KEEP_ENV, "").strip().lower() or "1"
    if value not in YES + NO:
        raise ValueError(f"{KEEP_ENV}={value!r}: expected 1 (keep routed experts packed) or 0")
    return value in YES


def scale_values(scale: torch.Tensor) -> torch.Tensor:
    """UE8M0 (e8m0 or raw uint8 exponents) or float scales, as float32."""
    if scale.dtype == torch.uint8:
        return torch.exp2(scale.float() - 127.0)
    return scale.float()


def stored_scale(scale: torch.Tensor) -> torch.Tensor:
    """A scale as packed experts keep it: UE8M0 exponent bytes (uint8), or float32."""
    if scale.dtype == torch.float8_e8m0fnu:
        return scale.view(torch.uint8)
    return scale if scale.dtype == torch.uint8 else scale.float()


def format_of(tensor: torch.Tensor) -> str | None:
    """The quantized format of a checkpoint tensor ("fp8" or "fp4"), None for a plain one."""
    if tensor.dtype == torch.float8_e4m3fn:
        return "fp8"
    return "fp4" if tensor.dtype in FP4_STORAGE else None


def is_quantized(tensor: torch.Tensor) -> bool:
    return format_of(tensor) is not None


def dequantize(weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if weight.dtype == torch.float8_e4m3fn:
        return dequantize_fp8(weight, scale).to(dtype)
    return dequantize_fp4(weight, scale).to(dtype)


def dequantize_fp8(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """[out, in] e4m3 with [ceil(out/128), ceil(in/128)] block scales -> float32 [out, in]."""
    return dequantize_fp8_rows(weight, block_rows(weight.shape, scale))


def block_rows(shape: tuple[int, ...], scale: torch.Tensor) -> torch.Tensor:
    """FP8 block scales [ceil(out/128), ceil(in/128)] of an [out, in] weight, repeated for every
    row: [out, ceil(in/128)], in the scale's own dtype."""
    rows, cols = shape
    blocks = (-(-rows // FP8_BLOCK), -(-cols // FP8_BLOCK))
    if tuple(scale.shape) != blocks:
        raise ValueError(f"FP8 weight {tuple(shape)} needs block scales {blocks}, got {tuple(scale.shape)}")
    raw = scale.view(torch.uint8) if scale.dtype == torch.float8_e8m0fnu else scale
    return raw.repeat_interleave(FP8_BLOCK, dim=0)[:rows]


def dequantize_fp8_rows(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """[out, in] e4m3 with a scale per row and 128 inputs [out, ceil(in/128)] -> float32 [out, in]."""
    cols = weight.shape[1]
    return weight.float() * scale_values(scale).repeat_interleave(FP8_BLOCK, dim=1)[:, :cols]


def dequantize_fp4(packed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """[out, in/2] packed e2m1 pairs with [out, in/32] scales -> float32 [out, in]."""
    rows, half = packed.shape
    groups = 2 * half // FP4_GROUP
    if 2 * half % FP4_GROUP or tuple(scale.shape) != (rows, groups):
        raise ValueError(
            f"FP4 weight {rows}x{2 * half} needs scales ({rows}, {groups}), got {tuple(scale.shape)}"
        )
    pairs = torch.index_select(_byte_values(packed.device), 0, packed.view(torch.uint8).reshape(-1).int())
    return (pairs.view(rows, groups, FP4_GROUP) * scale_values(scale)[..., None]).view(rows, 2 * half)


@functools.cache
def _byte_values(device: torch.device) -> torch.Tensor:
    """float32 [256, 2]: the two e2m1 values each byte holds, the low nibble (even input) first."""
    codes = torch.arange(256)
    nibbles = torch.stack((codes & 0x0F, codes >> 4), dim=-1)  # [256, 2]
    magnitudes = torch.tensor(E2M1_MAGNITUDES)[nibbles & 0x7]
    return torch.where(nibbles >= 8, -magnitudes, magnitudes).to(device)


def _ue8m0(amax: torch.Tensor, top: float) -> torch.Tensor:
    """The smallest power-of-two scale with amax / scale <= top, as float8_e8m0fnu."""
    exponent = torch.ceil(torch.log2(torch.clamp(amax / top, min=2.0**-126)))
    return torch.exp2(exponent).to(torch.float8_e8m0fnu)


def quantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float [out, in] -> e4m3 [out, in], e8m0 block scales [ceil(out/128), ceil(in/128)]."""
    rows, cols = weight.shape
    r, c = -(-rows // FP8_BLOCK), -(-cols // FP8_BLOCK)
    padded = weight.new_zeros(r * FP8_BLOCK, c * FP8_BLOCK, dtype=torch.float32)
    padded[:rows, :cols] = weight.float()
    blocks = padded.view(r, FP8_BLOCK, c, FP8_BLOCK)
    scale = _ue8m0(blocks.abs().amax(dim=(1, 3)), E4M3_MAX)  # [r, c]
    scaled = (blocks / scale.float()[:, None, :, None]).view_as(padded)
    return scaled[:rows, :cols].to(torch.float8_e4m3fn), scale


def quantize_fp4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float [out, in] -> int8 [out, in/2] (two e2m1 codes a byte), e8m0 scales [out, in/32]."""
    rows, cols = weight.shape
    if cols % FP4_GROUP:
        raise ValueError(f"FP4 needs the input width to be a multiple of {FP4_GROUP}, not {cols}")
    groups = weight.float().view(rows, cols // FP4_GROUP, FP4_GROUP)
    scale = _ue8m0(groups.abs().amax(dim=-1), E2M1_MAX)  # [out, in/32]
    scaled = (groups / scale.float()[..., None]).view(rows, cols)
    magnitude = scaled.abs()
    index = torch.zeros(scaled.shape, dtype=torch.uint8, device=weight.device)
    for midpoint in E2M1_MIDPOINTS:  # the nearest magnitude, a tie to the smaller
        index += magnitude > midpoint
    codes = torch.where((scaled < 0) & (index > 0), index | 8, index)  # the sign bit, never on 0
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).view(torch.int8), scale


def weight_key_of(scale_key: str) -> str | None:
    """The weight a scale belongs to (``x.scale`` / ``x.weight_scale_inv`` -> ``x.weight``)."""
    for suffix in SCALE_SUFFIXES:
        if scale_key.endswith(suffix):
            return scale_key[: -len(suffix)] + ".weight"
    return None


def paired(
    weights: Iterable[tuple[str, torch.Tensor]],
) -> Iterator[tuple[str, torch.Tensor, torch.Tensor | None]]:
    """Pair quantized weights with their scales as they stream by: (key, weight, scale) once
    both have arrived, (key, tensor, None) for plain tensors.

    Each quantized tensor waits only until its partner arrives (they sit side by side in
    release shards), so at most a few tensors are held at once.
    """
    waiting_weights: dict[str, torch.Tensor] = {}
    waiting_scales: dict[str, torch.Tensor] = {}
    for key, tensor in weights:
        owner = weight_key_of(key)
        if owner is not None:
            if owner in waiting_weights:
                yield owner, waiting_weights.pop(owner), tensor
            else:
                waiting_scales[owner] = tensor
        elif is_quantized(tensor) and key.endswith(".weight"):
            if key in waiting_scales:
                yield key, tensor, waiting_scales.pop(key)
            else:
                waiting_weights[key] = tensor
        else:
            yield key, tensor, None
    if waiting_weights:
        raise ValueError(f"quantized weights without a scale: {', '.join(sorted(waiting_weights)[:5])}")
    if waiting_scales:
        raise ValueError(f"scales without their weights: {', '.join(sorted(waiting_scales)[:5])}")


def dequantizing(
    weights: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype
) -> Iterator[tuple[str, torch.Tensor]]:
    """``paired``, with every quantized weight dequantized to ``dtype``: plain tensors only."""
    for key, tensor, scale in paired(weights):
        yield key, tensor if scale is None else dequantize(tensor, scale, dtype)
