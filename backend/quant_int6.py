"""INT6: our own 6-bit weight format for the matrices that dominate a shallow model's decode
step on CPU (the LM head of ``--pack fp4``), between FP8 (8 bits a weight) and FP4 (4.25).

No checkpoint ships it: it is only written by the opt-in load-time conversion
(``backend/packing.py``) from bf16 or float32 weights, and read by the native kernel
(``kernels/native_int6``) or decoded by ``dequantize_int6`` (the reference).

- Values: one float16 scale per row and 32 inputs; a weight is ``q x scale`` with ``q`` an
  integer in [-31, 31], stored as ``u = q + 32`` in [1, 63] (six bits; 0 is never written, the
  kernels read it as -32). 6.5 bits a weight with the scales.
- Scales: ``amax / 31`` of the group rounded to float16, then each weight rounded to the
  nearest ``q`` (ties to even) and clamped; an all-zero group has scale 0. Groups whose scale
  would overflow float16 (|w| above ~2e6) are refused.
- Layout, per row, in blocks of 128 inputs (K must be a multiple of 128), 96 bytes a block:
  64 bytes of low nibbles (byte m: input 2m's low four bits, then input 2m + 1's in the high
  nibble), then 32 bytes of high bit pairs (byte t: bits 0-1 input 2t's, 2-3 input 2(t + 32)'s,
  4-5 input 2t + 1's, 6-7 input 2(t + 32) + 1's). So one 64-byte load and one 32-byte load
  give, after a few shifts and masks, the 64 even inputs' and the 64 odd inputs' codes of a
  block as two byte vectors, which integer dot products (AVX512-VNNI) take as they are.

Error: the root-mean-square error is 0.83 of FP8 e4m3's (128 x 128 power-of-two block scales)
on Gaussian rows and 1.13 of it on heavy-tailed ones (Student t, 4 degrees), at 81% of its
bytes (``tests/backend/test_quant_int6.py`` holds both).
"""

from __future__ import annotations

import torch

INT6_BLOCK = 128  # inputs a layout block covers
INT6_GROUP = 32  # inputs that share a scale
INT6_MAX = 31
BLOCK_BYTES = 96  # 128 six-bit codes
FLOAT16_MAX = 65504.0


def int6_row_bytes(k: int) -> int:
    """Bytes of one row's codes (scales apart)."""
    return k // INT6_BLOCK * BLOCK_BYTES


def int6_width(row_bytes: int) -> int:
    """The inputs a row of ``row_bytes`` code bytes holds."""
    return row_bytes // BLOCK_BYTES * INT6_BLOCK


def check_width(cols: int) -> None:
    if cols % INT6_BLOCK or cols == 0:
        raise ValueError(f"INT6 needs the input width to be a multiple of {INT6_BLOCK}, not {cols}")


def quantize_int6(weight: torch.Tensor, chunk_rows: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """float [N, K] -> codes uint8 [N, K / 128 * 96], float16 scales [N, K / 32]; ``chunk_rows``
    rows at a time, so a large head's float32 copy is never whole."""
    rows, cols = weight.shape
    check_width(cols)
    codes = torch.empty(rows, int6_row_bytes(cols), dtype=torch.uint8, device=weight.device)
    scales = torch.empty(rows, cols // INT6_GROUP, dtype=torch.float16, device=weight.device)
    for start in range(0, rows, chunk_rows):
        stop = min(rows, start + chunk_rows)
        codes[start:stop], scales[start:stop] = _quantize_rows(weight[start:stop].float())
    return codes, scales


def _quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = w.shape
    groups = w.view(rows, cols // INT6_GROUP, INT6_GROUP)
    wanted = groups.abs().amax(dim=-1) / INT6_MAX
    if bool((wanted > FLOAT16_MAX).any()):
        raise ValueError("INT6's float16 scales cannot hold weights of this magnitude (above ~2e6)")
    scale = wanted.to(torch.float16)
    s = scale.float()[..., None]
    q = torch.where(s > 0, torch.round(groups / torch.where(s > 0, s, 1.0)), 0.0)
    u = (q.clamp(-INT6_MAX, INT6_MAX) + 32).to(torch.uint8).view(rows, cols // INT6_BLOCK, INT6_BLOCK)
    even, odd = u[..., 0::2], u[..., 1::2]  # [rows, blocks, 64]: inputs 2m and 2m + 1
    nibbles = (even & 15) | ((odd & 15) << 4)
    hi_even, hi_odd = even >> 4, odd >> 4
    pairs = hi_even[..., :32] | (hi_even[..., 32:] << 2) | (hi_odd[..., :32] << 4) | (hi_odd[..., 32:] << 6)
    return torch.cat((nibbles, pairs), dim=-1).view(rows, -1), scale


def dequantize_int6(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """codes [N, K / 128 * 96] with float16 scales [N, K / 32] -> float32 [N, K]."""
    rows, width = codes.shape
    cols = int6_width(width)
    if width % BLOCK_BYTES or tuple(scale.shape) != (rows, cols // INT6_GROUP):
        raise ValueError(
            f"INT6 codes {tuple(codes.shape)} need scales ({rows}, {cols // INT6_GROUP}), got {tuple(scale.shape)}"
        )
    blocks = codes.view(rows, cols // INT6_BLOCK, BLOCK_BYTES)
    nibbles, pairs = blocks[..., :64], blocks[..., 64:]
    hi_even = torch.cat((pairs & 3, (pairs >> 2) & 3), dim=-1)
    hi_odd = torch.cat(((pairs >> 4) & 3, pairs >> 6), dim=-1)
    even = (nibbles & 15) | (hi_even << 4)
    odd = (nibbles >> 4) | (hi_odd << 4)
    u = torch.stack((even, odd), dim=-1).view(rows, cols // INT6_GROUP, INT6_GROUP)
    return ((u.float() - 32.0) * scale.float()[..., None]).view(rows, cols)
