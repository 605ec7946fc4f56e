"""Weights kept in a release's quantized format in memory: a layer's routed experts
(``PackedExperts``) and dense matrices (``PackedWeight``), FP8 e4m3 with 128x128 block scales or
FP4 e2m1 with one scale per 32 inputs, scales as UE8M0 exponent bytes or float32; and dense
matrices in our own INT6 (``quant_int6``), which only the opt-in conversion writes. The formats
themselves (decoding, quantizing, pairing weights with scales) are ``quant.py``'s and
``quant_int6.py``'s; these are the
containers the layers and kernels take, so a model stores what the checkpoint holds and decodes
only what a step uses (``PackedExperts.expert``) or nothing at all (the native and Triton
kernels multiply by the packed bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from codeagent.backend.quant import (
    FP4_GROUP,
    FP8_BLOCK,
    block_rows,
    dequantize,
    dequantize_fp4,
    dequantize_fp8_rows,
    format_of,
    quantize_fp4,
    quantize_fp8,
    scale_values,
    stored_scale,
)
from codeagent.backend.quant_int6 import dequantize_int6, int6_width, quantize_int6


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
    scales [N, K/32] (FP4); scales as UE8M0 exponent bytes (uint8) or float32; or INT6: [N,
    K / 128 * 96] uint8 codes with float16 scales [N, K/32] (``quant_int6``). The native CPU
    kernels multiply by it without decoding it (``kernels/native_packed``, ``native_int6``);
    ``dequantize`` is what everything else multiplies by. ``of`` takes checkpoint tensors,
    ``quantize`` a float matrix (the opt-in conversion of bf16 weights)."""

    weight: torch.Tensor
    scale: torch.Tensor
    format: str  # "fp8", "fp4" or "int6"

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
        """float [N, K] -> ``kind``: "fp8" or "fp4" (scales as UE8M0 bytes), or "int6"."""
        if kind == "int6":
            return cls(*quantize_int6(weight), "int6")
        if kind not in ("fp8", "fp4"):
            raise ValueError(f"unknown format {kind!r}: fp8, fp4 or int6")
        return cls.of(*(quantize_fp8(weight) if kind == "fp8" else quantize_fp4(weight)))

    @property
    def shape(self) -> tuple[int, int]:
        """The logical [N, K]."""
        rows, width = self.weight.shape
        if self.format == "int6":
            return rows, int6_width(width)
        return rows, width * (2 if self.format == "fp4" else 1)

    @property
    def nbytes(self) -> int:
        return self.weight.nbytes + self.scale.nbytes

    def dequantize(self, dtype: torch.dtype) -> torch.Tensor:
        """[N, K] in ``dtype``: the values the packed kernels multiply by."""
        if self.format == "int6":
            return dequantize_int6(self.weight, self.scale).to(dtype)
        return dequantize(self.weight, self.scale, dtype)

    def splits(self, rows: int) -> bool:
        """Whether blocks of ``rows`` rows cut no scale: FP4 and INT6 always, FP8 at whole
        128-row blocks."""
        return rows > 0 and (self.format != "fp8" or rows % FP8_BLOCK == 0)

    def rows(self, start: int, stop: int) -> PackedWeight:
        """Rows [start, stop) with their scales, sharing this weight's storage; FP8 rows must
        start at a 128-row block and end at one or at the last row."""
        if self.format != "fp8":
            return PackedWeight(self.weight[start:stop], self.scale[start:stop], self.format)
        if start % FP8_BLOCK or (stop % FP8_BLOCK and stop != self.shape[0]):
            raise ValueError(f"FP8 rows [{start}, {stop}) cut the {FP8_BLOCK}-row blocks of their scales")
        blocks = self.scale[start // FP8_BLOCK : -(-stop // FP8_BLOCK)]
        return PackedWeight(self.weight[start:stop], blocks, "fp8")
