"""RMSNorm, optionally fused with the residual add before it (Triton).

One program per row of ``D`` channels (any leading shape [A, B, D] with a contiguous last
dim, so per-head norms on a strided view of a fused QKV output need no copy). Statistics
in float32. Three roundings match the references bit for bit in float32 and to the last
bf16 ulp otherwise:

- ``weight_in_fp32=False`` (Qwen3, ``layers/norm.py``): normalise, cast to the input dtype,
  then multiply by the weight in that dtype;
- ``weight_in_fp32=True`` (DeepSeek-V4's ``rms_norm``): multiply by the float32 weight
  before the cast;
- no weight (V4's ``unweighted_rms_norm``): x times rsqrt cast to the input dtype.

With ``residual``, the kernel first forms ``x + residual`` in the input dtype, writes it
out (the new residual stream) and normalises it: one read of each, two writes.
Limits: a row must fit one block (D <= 65536).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from codeagent.backend.kernels.common import round_to


@triton.jit
def _rms_norm_kernel(
    x_ptr,
    res_ptr,
    w_ptr,
    out_ptr,
    res_out_ptr,
    B,
    stride_xa,
    stride_xb,
    stride_ra,
    stride_rb,
    D,
    eps,
    HAS_RES: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    WEIGHT_FP32: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    a, b = row // B, row % B
    cols = tl.arange(0, BLOCK)
    mask = cols < D
    dtype = out_ptr.dtype.element_ty
    h = tl.load(x_ptr + a * stride_xa + b * stride_xb + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RES:
        r = tl.load(res_ptr + a * stride_ra + b * stride_rb + cols, mask=mask, other=0.0).to(tl.float32)
        h = round_to(h + r, dtype)  # the reference adds in the input dtype
        tl.store(res_out_ptr + row * D + cols, h.to(dtype), mask=mask)
    inv = tl.div_rn(1.0, tl.sqrt_rn(tl.sum(h * h, axis=0) / D + eps))  # IEEE-rounded, as torch.rsqrt
    if HAS_WEIGHT:
        w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        if WEIGHT_FP32:  # noqa: SIM108 (constexpr branches in a Triton kernel)
            y = w * (h * inv)
        else:
            y = round_to(h * inv, dtype) * round_to(w, dtype)
    else:
        y = h * round_to(inv, dtype)
    tl.store(out_ptr + row * D + cols, y.to(dtype), mask=mask)


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
    weight_in_fp32: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x [..., D] -> RMSNorm(x) (same shape and dtype); with residual, also returns x + residual."""
    shape, d = x.shape, x.shape[-1]
    x3 = _as_3d(x)
    r3 = _as_3d(residual) if residual is not None else x3
    out = torch.empty(shape, dtype=x.dtype, device=x.device)
    res_out = torch.empty(shape, dtype=x.dtype, device=x.device) if residual is not None else out
    rows = x3.shape[0] * x3.shape[1]
    if rows:
        _rms_norm_kernel[(rows,)](
            x3,
            r3,
            weight if weight is not None else x3,
            out,
            res_out,
            x3.shape[1],
            x3.stride(0),
            x3.stride(1),
            r3.stride(0),
            r3.stride(1),
            d,
            eps,
            HAS_RES=residual is not None,
            HAS_WEIGHT=weight is not None,
            WEIGHT_FP32=weight_in_fp32,
            BLOCK=triton.next_power_of_2(d),
        )
    return (out, res_out) if residual is not None else out


def rms_norm_residual_ref(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    from codeagent.backend.layers.norm import rms_norm as reference

    summed = x + residual
    return reference(summed, weight, eps), summed
