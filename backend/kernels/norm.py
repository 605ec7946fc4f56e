"""RMSNorm, optionally fused with the residual add before it (Triton).

Each program normalises a few rows of ``D`` channels (any leading shape [A, B, D] with a
contiguous last dim, so per-head norms on a strided view of a fused QKV output need no
copy); rows per program grow as D shrinks. Statistics
in float32. Three roundings follow the references (equal up to float32 summation order,
within an ulp or two in bf16):

- ``CAST_FIRST`` (``layers/norm.py``'s ``rms_norm``): normalise, cast to the input dtype, then multiply
  by the weight in that dtype (no weight: just the cast);
- ``WEIGHT_FIRST`` (DeepSeek-V4's ``rms_norm``): multiply by the float32 weight before
  the cast;
- ``SCALE_IN_DTYPE`` (V4's ``unweighted_rms_norm``): x times rsqrt cast to the input dtype.

With ``residual``, the kernel first forms ``x + residual`` in the input dtype, writes it
out (the new residual stream) and normalises it: one read of each, two writes
(``layers/norm.py``'s ``add_rms_norm``, around every Qwen3 attention block).
Limits: a row must fit one block (D <= 65536).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from codeagent.backend.kernels.common import INTERPRETING, round_to

CAST_FIRST, WEIGHT_FIRST, SCALE_IN_DTYPE = 0, 1, 2


@triton.jit
def _rms_norm_kernel(
    x_ptr, res_ptr, w_ptr, out_ptr, res_out_ptr,
    R, B, stride_xa, stride_xb, stride_ra, stride_rb, D, eps,
    HAS_RES: tl.constexpr, HAS_WEIGHT: tl.constexpr, ROUNDING: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    a, b = row // B, row % B
    cols = tl.arange(0, BLOCK)
    mask = (row < R)[:, None] & (cols < D)[None, :]
    dtype = out_ptr.dtype.element_ty
    src = (a * stride_xa + b * stride_xb)[:, None] + cols[None, :]
    dst = row[:, None] * D + cols[None, :]
    h = tl.load(x_ptr + src, mask=mask, other=0.0).to(tl.float32)
    if HAS_RES:
        res = (a * stride_ra + b * stride_rb)[:, None] + cols[None, :]
        h = round_to(h + tl.load(res_ptr + res, mask=mask, other=0.0).to(tl.float32), dtype)  # added in dtype
        tl.store(res_out_ptr + dst, h.to(dtype), mask=mask)
    inv = tl.div_rn(1.0, tl.sqrt_rn(tl.sum(h * h, axis=1) / D + eps))[:, None]  # IEEE-rounded, as torch.rsqrt
    if ROUNDING == 2:
        y = h * round_to(inv, dtype)
    elif ROUNDING == 1:
        y = h * inv
        if HAS_WEIGHT:
            y = tl.load(w_ptr + cols, mask=cols < D, other=0.0).to(tl.float32)[None, :] * y
    else:
        y = round_to(h * inv, dtype)
        if HAS_WEIGHT:
            y = y * round_to(tl.load(w_ptr + cols, mask=cols < D, other=0.0).to(tl.float32), dtype)[None, :]
    tl.store(out_ptr + dst, y.to(dtype), mask=mask)


def _as_3d(x: torch.Tensor) -> torch.Tensor:
    if x.stride(-1) != 1:
        x = x.contiguous()
    if x.dim() == 1:
        return x.view(1, 1, -1)
    if x.dim() == 2:
        return x.unsqueeze(1)
    if x.dim() > 3:
        x = x.reshape(-1, x.shape[-2], x.shape[-1])
    return x


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    eps: float,
    residual: torch.Tensor | None = None,
    rounding: int = CAST_FIRST,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x [..., D] -> RMSNorm(x) (same shape and dtype); with residual, also returns x + residual."""
    shape, d = x.shape, x.shape[-1]
    x3 = _as_3d(x)
    r3 = _as_3d(residual) if residual is not None else x3
    out = torch.empty(shape, dtype=x.dtype, device=x.device)
    res_out = torch.empty(shape, dtype=x.dtype, device=x.device) if residual is not None else out
    rows, block = x3.shape[0] * x3.shape[1], triton.next_power_of_2(d)
    per_program = max(1, min(triton.next_power_of_2(rows), (16384 if INTERPRETING else 2048) // block))
    if rows:
        _rms_norm_kernel[(triton.cdiv(rows, per_program),)](
            x3,
            r3,
            weight if weight is not None else x3,
            out,
            res_out,
            rows,
            x3.shape[1],
            x3.stride(0),
            x3.stride(1),
            r3.stride(0),
            r3.stride(1),
            d,
            eps,
            HAS_RES=residual is not None,
            HAS_WEIGHT=weight is not None,
            ROUNDING=rounding,
            BLOCK_R=per_program,
            BLOCK=block,
        )
    return (out, res_out) if residual is not None else out
