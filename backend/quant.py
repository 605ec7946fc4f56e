"""DeepSeek-V4 release weight formats: FP8 e4m3 with 128x128 block scales, FP4 e2m1 experts.

- FP8: ``W`` float8_e4m3fn [out, in] and one scale per 128x128 block [ceil(out/128),
  ceil(in/128)]; value = fp8 x scale of its block.
- FP4: two e2m1 codes per byte [out, in/2] (the even input in the low nibble, as in the OCP
  MX format and torch's ``float4_e2m1fn_x2``) and one scale per 32 inputs [out, in/32];
  value = e2m1 x scale. An e2m1 code is a sign bit and a magnitude from
  {0, 0.5, 1, 1.5, 2, 3, 4, 6}.
- Scales are UE8M0 (a power of two, stored as its biased exponent): ``float8_e8m0fnu``, or
  raw ``uint8`` exponents; float32 scales are taken as they are.

The loader dequantizes at load time into the model dtype (the weight-only in-kernel path
that keeps them packed belongs to the kernels' work). ``quantize_*`` write the same formats,
for tests and for making small release-layout checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

FP8_BLOCK = 128
FP4_GROUP = 32
E2M1_MAGNITUDES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
E2M1_MAX = 6.0
E4M3_MAX = 448.0


def scale_values(scale: torch.Tensor) -> torch.Tensor:
    """UE8M0 (or float) scales as float32."""
    if scale.dtype == torch.uint8:
        return torch.exp2(scale.float() - 127.0)
    return scale.float()


def is_quantized(tensor: torch.Tensor) -> bool:
    return tensor.dtype in (torch.float8_e4m3fn, torch.uint8, torch.int8, torch.float4_e2m1fn_x2)


def dequantize(weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if weight.dtype == torch.float8_e4m3fn:
        return dequantize_fp8(weight, scale).to(dtype)
    return dequantize_fp4(weight, scale).to(dtype)


def dequantize_fp8(weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """[out, in] e4m3 with [ceil(out/128), ceil(in/128)] block scales -> float32."""
    out_features, in_features = weight.shape
    blocks = scale_values(scale)
    expanded = blocks.repeat_interleave(FP8_BLOCK, 0)[:out_features].repeat_interleave(FP8_BLOCK, 1)[
        :, :in_features
    ]
    return weight.float() * expanded


def dequantize_fp4(packed: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """[out, in/2] packed e2m1 pairs with [out, in/32] scales -> float32 [out, in]."""
    raw = packed.view(torch.uint8)
    codes = torch.stack((raw & 0x0F, raw >> 4), dim=-1).flatten(-2).long()  # [out, in]
    magnitudes = E2M1_MAGNITUDES.to(packed.device)[codes & 0x7]
    values = torch.where(codes >= 8, -magnitudes, magnitudes)
    return values * scale_values(scale).repeat_interleave(FP4_GROUP, dim=1)


def _ue8m0(amax: torch.Tensor, top: float) -> torch.Tensor:
    """The smallest power-of-two scale with amax / scale <= top, as float8_e8m0fnu."""
    exponent = torch.ceil(torch.log2(torch.clamp(amax / top, min=2.0**-126)))
    return torch.exp2(exponent).to(torch.float8_e8m0fnu)


def quantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out_features, in_features = weight.shape
    rows, cols = -(-out_features // FP8_BLOCK), -(-in_features // FP8_BLOCK)
    padded = torch.zeros(rows * FP8_BLOCK, cols * FP8_BLOCK)
    padded[:out_features, :in_features] = weight.float()
    blocks = padded.view(rows, FP8_BLOCK, cols, FP8_BLOCK)
    scale = _ue8m0(blocks.abs().amax(dim=(1, 3)), E4M3_MAX)  # [rows, cols]
    scaled = blocks / scale.float()[:, None, :, None]
    return scaled.view_as(padded)[:out_features, :in_features].to(torch.float8_e4m3fn), scale


def quantize_fp4(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out_features, in_features = weight.shape
    if in_features % FP4_GROUP:
        raise ValueError(f"FP4 needs the input width to be a multiple of {FP4_GROUP}, not {in_features}")
    groups = weight.float().view(out_features, in_features // FP4_GROUP, FP4_GROUP)
    scale = _ue8m0(groups.abs().amax(dim=-1), E2M1_MAX)  # [out, in/32]
    scaled = (groups / scale.float()[..., None]).view(out_features, in_features)
    nearest = (
        (scaled.abs()[..., None] - E2M1_MAGNITUDES).abs().argmin(dim=-1)
    )  # index of the closest magnitude
    codes = (nearest | ((scaled < 0) & (nearest > 0)).long() << 3).to(torch.uint8)
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
    return packed, scale


SCALE_SUFFIXES = (".weight_scale_inv", ".weight_scale", ".scale")


def weight_key_of(scale_key: str) -> str | None:
    """The weight a scale belongs to (``x.scale`` / ``x.weight_scale_inv`` -> ``x.weight``)."""
    for suffix in SCALE_SUFFIXES:
        if scale_key.endswith(suffix):
            return scale_key[: -len(suffix)] + ".weight"
    return None


def dequantizing(
    weights: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype
) -> Iterator[tuple[str, torch.Tensor]]:
    """Pair quantized weights with their scales as they stream by; yield plain tensors.

    Each quantized tensor waits only until its partner arrives (they sit side by side in
    release shards), so at most a few tensors are held at once.
    """
    waiting_weights: dict[str, torch.Tensor] = {}
    waiting_scales: dict[str, torch.Tensor] = {}
    for key, tensor in weights:
        owner = weight_key_of(key)
        if owner is not None and owner not in waiting_scales:
            if owner in waiting_weights:
                yield owner, dequantize(waiting_weights.pop(owner), tensor, dtype)
            else:
                waiting_scales[owner] = tensor
        elif is_quantized(tensor) and key.endswith(".weight"):
            if key in waiting_scales:
                yield key, dequantize(tensor, waiting_scales.pop(key), dtype)
            else:
                waiting_weights[key] = tensor
        else:
            yield key, tensor
    if waiting_weights:
        raise ValueError(f"quantized weights without a scale: {', '.join(sorted(waiting_weights)[:5])}")
    if waiting_scales:
        raise ValueError(f"scales without their weights: {', '.join(sorted(waiting_scales)[:5])}")
