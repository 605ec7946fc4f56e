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

Routed experts can stay packed in memory (``PackedExperts``, on by default for quantized
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
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class PackedExperts:
    """A layer's routed experts kept quantized: ``weight`` [E, N, K] float8_e4m3fn (FP8) or
    [E, N, K/2] uint8 (FP4, two e2m1 codes a byte), ``scale`` [E, N, K / group], one per row
    and group of inputs (FP8's 128x128 blocks repeated over their rows) as UE8M0 exponent
    bytes (uint8) or float32. ``fill`` stores checkpoint matrices, ``expert`` decodes one."""

    weight: torch.Tensor
    scale: torch.Tensor
    format: str  # "fp8" or "fp4"

    @classmethod
    def empty(
        cls, shape: tuple[int, ...], weight: torch.Tensor, scale: torch.Tensor, device: torch.device
    ) -> PackedExperts:
        """Uninitialised experts of logical shape [E, N, K] in the format of a checkpoint weight and scale."""
        experts, rows, cols = shape
        kind = format_of(weight)
        if kind is None:
            raise ValueError(f"{weight.dtype} is not a quantized format")
        if kind == "fp4" and cols % FP4_GROUP:
            raise ValueError(f"FP4 needs the input width to be a multiple of {FP4_GROUP}, not {cols}")
        group = FP8_BLOCK if kind == "fp8" else FP4_GROUP
        storage = torch.float8_e4m3fn if kind == "fp8" else torch.uint8
        width = cols if kind == "fp8" else cols // 2
        return cls(
            torch.empty(experts, rows, width, dtype=storage, device=device),
            torch.empty(experts, rows, -(-cols // group), dtype=stored_scale(scale).dtype, device=device),
            kind,
        )

    @classmethod
    def quantize(cls, weights: torch.Tensor, kind: str) -> PackedExperts:
        """float [E, N, K] -> ``kind`` ("fp8" or "fp4") experts, scales as UE8M0 bytes (the opt-in
        conversion of full-precision experts; one expert's float32 copy at a time)."""
        quantizer = {"fp8": quantize_fp8, "fp4": quantize_fp4}.get(kind)
        if quantizer is None:
            raise ValueError(f"unknown format {kind!r}: fp8 or fp4")
        packed: PackedExperts | None = None
        for e in range(weights.shape[0]):
            weight, scale = quantizer(weights[e])
            if packed is None:
                packed = cls.empty(tuple(weights.shape), weight, scale, weights.device)
            packed.fill(e, slice(None), weight, scale)
        if packed is None:
            raise ValueError("no experts to quantize")
        return packed

    @property
    def shape(self) -> tuple[int, int, int]:
        """The logical [E, N, K]."""
        experts, rows, width = self.weight.shape
        return experts, rows, width * (2 if self.format == "fp4" else 1)

    @property
    def nbytes(self) -> int:
        return self.weight.nbytes + self.scale.nbytes

    def fill(self, expert: int, rows: slice, weight: torch.Tensor, scale: torch.Tensor) -> None:
        """Store one checkpoint matrix as ``rows`` of ``expert``: [n, K] FP8 with its block scales,
        or [n, K/2] FP4 with [n, K/32] scales."""
        if format_of(weight) != self.format:
            raise ValueError(f"{weight.dtype} among {self.format.upper()} experts; dequantize them at load")
        expected = (len(range(*rows.indices(self.shape[1]))), self.shape[2])
        logical = (weight.shape[0], weight.shape[1] * (2 if self.format == "fp4" else 1))
        if logical != expected:
            raise ValueError(f"checkpoint shape {logical}, model expects {expected}")
        per_row = stored_scale(block_rows(logical, scale) if self.format == "fp8" else scale)
        if tuple(per_row.shape) != (logical[0], self.scale.shape[2]):
            raise ValueError(
                f"FP4 weight {logical} needs scales ({logical[0]}, {self.scale.shape[2]}), got {tuple(scale.shape)}"
            )
        if self.scale.dtype == torch.uint8 and per_row.dtype != torch.uint8:
            raise ValueError("float scales among UE8M0 ones; dequantize them at load")
        self.weight[expert, rows].copy_(weight.view(self.weight.dtype))
        self.scale[expert, rows].copy_(per_row if self.scale.dtype == torch.uint8 else scale_values(per_row))

    def expert(self, index: int, dtype: torch.dtype) -> torch.Tensor:
        """Expert ``index`` decoded: [N, K] in dtype (the values dequantize-at-load gives)."""
        if self.format == "fp8":
            return dequantize_fp8_rows(self.weight[index], self.scale[index]).to(dtype)
        return dequantize_fp4(self.weight[index], self.scale[index]).to(dtype)


@dataclass(frozen=True, slots=True)
class PackedWeight:
    """A dense matrix kept quantized, as released: ``weight`` [N, K] float8_e4m3fn with block
    scales [ceil(N/128), ceil(K/128)] (FP8), or [N, K/2] uint8, two e2m1 codes a byte, with
    scales [N, K/32] (FP4); scales as UE8M0 exponent bytes (uint8) or float32. The native CPU
    kernels multiply by it without decoding it (``kernels/native_packed``); ``dequantize`` is
    what everything else multiplies by. ``of`` takes checkpoint tensors, ``quantize`` a float
    matrix (the opt-in conversion of bf16 weights)."""

    weight: torch.Tensor
    scale: torch.Tensor
    format: str  # "fp8" or "fp4"

    @classmethod
    def of(cls, weight: torch.Tensor, scale: torch.Tensor) -> PackedWeight:
        """A checkpoint's quantized weight and its scale, checked and kept as they are (FP4 bytes
        and e8m0 scales seen as uint8)."""
        kind = format_of(weight)
        if kind is None:
            raise ValueError(f"{weight.dtype} is not a quantized format")
        rows, width = weight.shape
        if kind == "fp8":
            block_rows((rows, width), scale)  # checks the block scales' shape
        elif tuple(scale.shape) != (rows, 2 * width // FP4_GROUP) or 2 * width % FP4_GROUP:
            raise ValueError(f"FP4 weight {rows}x{2 * width} needs scales ({rows}, {2 * width // FP4_GROUP})")
        packed = weight if kind == "fp8" else weight.view(torch.uint8)
        return cls(packed, stored_scale(scale), kind)

    @classmethod
    def quantize(cls, weight: torch.Tensor, kind: str) -> PackedWeight:
        """float [N, K] -> ``kind`` ("fp8" or "fp4"), scales as UE8M0 bytes."""
        if kind not in ("fp8", "fp4"):
            raise ValueError(f"unknown format {kind!r}: fp8 or fp4")
        return cls.of(*(quantize_fp8(weight) if kind == "fp8" else quantize_fp4(weight)))

    @property
    def shape(self) -> tuple[int, int]:
        """The logical [N, K]."""
        rows, width = self.weight.shape
        return rows, width * (2 if self.format == "fp4" else 1)

    @property
    def nbytes(self) -> int:
        return self.weight.nbytes + self.scale.nbytes

    def dequantize(self, dtype: torch.dtype) -> torch.Tensor:
        """[N, K] in ``dtype``: the values the packed kernels multiply by."""
        return dequantize(self.weight, self.scale, dtype)

    def splits(self, rows: int) -> bool:
        """Whether blocks of ``rows`` rows cut no scale: FP4 always, FP8 at whole 128-row blocks."""
        return rows > 0 and (self.format == "fp4" or rows % FP8_BLOCK == 0)

    def rows(self, start: int, stop: int) -> PackedWeight:
        """Rows [start, stop) with their scales, sharing this weight's storage; FP8 rows must
        start at a 128-row block and end at one or at the last row."""
        if self.format == "fp4":
            return PackedWeight(self.weight[start:stop], self.scale[start:stop], "fp4")
        if start % FP8_BLOCK or (stop % FP8_BLOCK and stop != self.shape[0]):
            raise ValueError(f"FP8 rows [{start}, {stop}) cut the {FP8_BLOCK}-row blocks of their scales")
        blocks = self.scale[start // FP8_BLOCK : -(-stop // FP8_BLOCK)]
        return PackedWeight(self.weight[start:stop], blocks, "fp8")
