"""Rotary position embeddings (Triton): rotate-half and interleaved layouts, partial rotation.

``x`` [T, H, D] (or [T, D]) with a contiguous last dim; ``cos``/``sin`` [T, R] float32 (or
broadcastable [T, 1, R]), the per-channel values of the rotated channels, exactly what the
references take. The rotated channels are ``[start, start + R)``, the others pass through:

- rotate-half (Qwen3 / GPT-NeoX, ``layers/rotary.py``): pairs (i, i + R/2), start 0;
  ``partial`` rotary dims leave the tail untouched;
- interleaved (DeepSeek-V4, ``models/deepseek_v4/rope``): pairs (2i, 2i + 1) in the last R
  channels (start D - R). Pass ``-sin`` to rotate back.

Each program rotates a tile of (token, head) rows; math in float32 (cos/sin are float32; the rotate-half
reference rounds them to the input dtype first, so bf16 results may differ by an ulp).
Writes a new tensor, as the references return one.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from codeagent.backend.kernels.common import INTERPRETING


@triton.jit
def _rotary_kernel(
    x_ptr, cos_ptr, sin_ptr, out_ptr,
    R, H, stride_xt, stride_xh, stride_ct, D, START, HALF,
    INTERLEAVED: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_P: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)  # (token, head) pairs
    row_ok = (row < R)[:, None]
    t = row // H
    src = (t * stride_xt + (row % H) * stride_xh)[:, None]
    dst = (row * D)[:, None]
    cols = tl.arange(0, BLOCK_D)[None, :]
    keep = row_ok & (cols < D) & ((cols < START) | (cols >= START + 2 * HALF))  # channels not rotated
    tl.store(out_ptr + dst + cols, tl.load(x_ptr + src + cols, mask=keep), mask=keep)
    pair = tl.arange(0, BLOCK_P)[None, :]
    pmask = row_ok & (pair < HALF)
    if INTERLEAVED:
        first, second = START + 2 * pair, START + 2 * pair + 1
    else:
        first, second = START + pair, START + HALF + pair
    trig = (t * stride_ct)[:, None] - START
    c1 = tl.load(cos_ptr + trig + first, mask=pmask)
    s1 = tl.load(sin_ptr + trig + first, mask=pmask)
    c2 = tl.load(cos_ptr + trig + second, mask=pmask)
    s2 = tl.load(sin_ptr + trig + second, mask=pmask)
    a = tl.load(x_ptr + src + first, mask=pmask).to(tl.float32)
    b = tl.load(x_ptr + src + second, mask=pmask).to(tl.float32)
    tl.store(out_ptr + dst + first, (a * c1 - b * s1).to(out_ptr.dtype.element_ty), mask=pmask)
    tl.store(out_ptr + dst + second, (b * c2 + a * s2).to(out_ptr.dtype.element_ty), mask=pmask)


def apply_rotary(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool = False
) -> torch.Tensor:
    """x [T, H, D] or [T, D]; cos, sin [T, R] (or [T, 1, R]) -> rotated copy of x.

    Rotate-half rotates channels [0, R); interleaved rotates the last R channels."""
    squeeze = x.dim() == 2
    x3 = x[:, None] if squeeze else x
    if x3.stride(-1) != 1:
        x3 = x3.contiguous()
    cos, sin = cos.reshape(cos.shape[0], -1).float(), sin.reshape(sin.shape[0], -1).float()
    if cos.stride(-1) != 1 or sin.stride() != cos.stride():
        cos, sin = cos.contiguous(), sin.contiguous()
    t, h, d = x3.shape
    r = cos.shape[-1]
    if cos.shape != (t, r) or r % 2 or r > d:
        raise ValueError(f"cos/sin {tuple(cos.shape)} do not fit x {tuple(x.shape)}")
    out = torch.empty((t, h, d), dtype=x.dtype, device=x.device)
    rows, block_d = t * h, triton.next_power_of_2(d)
    per_program = max(1, min(triton.next_power_of_2(rows), (16384 if INTERPRETING else 2048) // block_d))
    if rows:
        _rotary_kernel[(triton.cdiv(rows, per_program),)](
            x3,
            cos,
            sin,
            out,
            rows,
            h,
            x3.stride(0),
            x3.stride(1),
            cos.stride(0),
            d,
            d - r if interleaved else 0,
            r // 2,
            INTERLEAVED=interleaved,
            BLOCK_R=per_program,
            BLOCK_D=block_d,
            BLOCK_P=triton.next_power_of_2(max(r // 2, 1)),
        )
    return out[:, 0] if squeeze else out
