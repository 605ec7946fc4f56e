"""INT6, our 6-bit weight format (``backend/quant_int6.py``): its byte layout built by hand here,
its rounding bound, its error against FP8 on Gaussian and heavy-tailed rows (the figures its
docstring and ``packing.py`` state), and its refusals."""

from __future__ import annotations

import pytest
import torch

from codeagent.backend.packed_weights import PackedWeight
from codeagent.backend.quant import dequantize_fp8, quantize_fp8
from codeagent.backend.quant_int6 import dequantize_int6, int6_row_bytes, quantize_int6


def hand_packed(u: list[int]) -> list[int]:
    """One block's 96 bytes from its 128 stored codes, written from the layout's description."""
    nibbles = [(u[2 * m] & 15) | ((u[2 * m + 1] & 15) << 4) for m in range(64)]
    pairs = [
        (u[2 * t] >> 4)
        | ((u[2 * (t + 32)] >> 4) << 2)
        | ((u[2 * t + 1] >> 4) << 4)
        | ((u[2 * (t + 32) + 1] >> 4) << 6)
        for t in range(32)
    ]
    return nibbles + pairs


def test_the_layout_is_the_one_described():
    # every q from -31 to 31 appears, each group of 32 holds a -31, and the scale 2^-6 is exact
    q = [((7 * i) % 63) - 31 for i in range(256)]
    for g in range(0, 256, 32):
        q[g] = -31
    weight = torch.tensor([q], dtype=torch.float32) * 2.0**-6
    codes, scale = quantize_int6(weight)
    assert codes.shape == (1, 192) and scale.dtype == torch.float16 and scale.shape == (1, 8)
    assert torch.equal(scale.float(), torch.full((1, 8), 2.0**-6))
    u = [v + 32 for v in q]
    assert codes[0].tolist() == hand_packed(u[:128]) + hand_packed(u[128:])
    assert torch.equal(dequantize_int6(codes, scale), weight)


def test_rounding_is_within_half_a_step():
    weight = torch.randn(64, 512, generator=torch.Generator().manual_seed(1)) * 0.05
    weight[3, 32:64] = 0.0  # an all-zero group
    codes, scale = quantize_int6(weight)
    step = scale.float().repeat_interleave(32, dim=1)
    error = (dequantize_int6(codes, scale) - weight).abs()
    # half a step; a float16 scale rounded below amax / 31 clamps the largest weight by 2^-11 of it
    assert bool((error <= step * (0.5 + 31 * 2.0**-11)).all())
    assert scale[3, 1] == 0 and bool((dequantize_int6(codes, scale)[3, 32:64] == 0).all())
    assert int6_row_bytes(512) * 8 + 16 * 512 // 32 == 6.5 * 512


@pytest.mark.parametrize(
    ("rows", "below"),
    [
        ("gaussian", 0.9),  # measured 0.83
        ("student_t4", 1.2),  # measured 1.13: FP8's float steps suit outliers better
    ],
)
def test_error_against_fp8(rows, below):
    gen = torch.Generator().manual_seed(0)
    if rows == "gaussian":
        weight = torch.randn(512, 2048, generator=gen) * 0.02
    else:  # a Student t with 4 degrees of freedom: normal / sqrt(chi2_4 / 4)
        chi2 = torch.randn(4, 512, 2048, generator=gen).pow(2).sum(0) / 4
        weight = torch.randn(512, 2048, generator=gen) / chi2.sqrt() * 0.02
    int6 = (dequantize_int6(*quantize_int6(weight)) - weight).pow(2).mean().sqrt()
    fp8 = (dequantize_fp8(*quantize_fp8(weight)) - weight).pow(2).mean().sqrt()
    assert 0.5 < float(int6 / fp8) < below


def test_packed_weight_holds_int6():
    weight = torch.randn(200, 256, generator=torch.Generator().manual_seed(2)).bfloat16()
    packed = PackedWeight.quantize(weight, "int6")
    assert packed.format == "int6" and packed.shape == (200, 256)
    assert packed.nbytes == 200 * 256 * 6.5 / 8
    assert packed.splits(7)
    part = packed.rows(10, 17)
    assert part.shape == (7, 256) and torch.equal(
        part.dequantize(torch.float32), packed.dequantize(torch.float32)[10:17]
    )


def test_refusals():
    with pytest.raises(ValueError, match="multiple of 128, not 96"):
        quantize_int6(torch.zeros(4, 96))
    with pytest.raises(ValueError, match="cannot hold weights of this magnitude"):
        quantize_int6(torch.full((1, 128), 3e6))
    codes, scale = quantize_int6(torch.ones(2, 128))
    with pytest.raises(ValueError, match="need scales"):
        dequantize_int6(codes, scale[:1])
    with pytest.raises(ValueError, match="unknown format 'int4': fp8, fp4 or int6"):
        PackedWeight.quantize(torch.ones(2, 128), "int4")
