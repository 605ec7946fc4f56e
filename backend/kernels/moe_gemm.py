"""Grouped GEMMs over expert-sorted pairs (Triton): gate/up with the activation fused, and down.

Both kernels take the layout of ``moe_align``: a program owns one tile of ``BLOCK_M`` sorted
pairs (all of one expert; padding rows are masked) and ``BLOCK_N`` output columns, so
one launch covers every expert and the expert's weights are read once per tile.

- ``gate_up``: rows of x gathered by token ([P] pair -> token p // k), times the expert's
  gate and up rows of ``w13`` [E, 2I, H] in the same K loop, then the activation:
  SiLU-gated (Qwen3: silu(g) * u, rounded like the reference's dtype ops) or DeepSeek-V4's
  clamped form silu(min(g, L)) * clamp(u, -L, L) in float32, optionally times the pair's
  routing weight (V4 weights before the down projection). Writes h [P, I] in x's dtype.
- ``down``: h [P, I] times ``w2`` [E, H, I], optionally times the routing weight after
  (Qwen3), written per pair as float32 [P, H]; ``fused_moe`` sums the k pairs of a token.

Weights are plain (the activation dtype), FP8 e4m3 or packed FP4 e2m1 (two codes a byte,
even input in the low nibble), the last two with scales [E, N, K / GROUP] (FP8: one per
row and 128 inputs, the 128x128 blocks expanded per row; FP4: per 32 inputs), float32 or
UE8M0 exponent bytes (uint8: 2^(byte - 127), a float32 built from its exponent bits).
Quantized tiles are decoded in registers and multiplied in the activation dtype
(weight-only quantization: the memory saving and bandwidth, not FP8 tensor-core math).
Accumulation is float32; fp32 dots use IEEE precision, not TF32, so float32 runs match
the torch reference token for token.
"""

from __future__ import annotations

import triton
import triton.language as tl

from codeagent.backend.kernels.common import dot, round_to

PLAIN, FP8, FP4 = 0, 1, 2


@triton.jit
def _weight_tile(
    w_ptr,
    s_ptr,
    e,
    rows,
    row_ok,
    k,
    K,
    stride_we,
    stride_wn,
    stride_se,
    stride_sn,
    FORMAT: tl.constexpr,
    GROUP: tl.constexpr,
    dtype: tl.constexpr,
):
    """Rows ``rows`` [BN] x inputs ``k`` [BK] of expert e's weight, as a [BK, BN] tile in dtype."""
    mask = (k[:, None] < K) & row_ok[None, :]
    if FORMAT == 0:
        tile = tl.load(w_ptr + e * stride_we + rows[None, :] * stride_wn + k[:, None], mask=mask, other=0.0)
    else:
        scale = tl.load(
            s_ptr + e * stride_se + rows[None, :] * stride_sn + k[:, None] // GROUP, mask=mask, other=0.0
        )
        if s_ptr.dtype.element_ty == tl.uint8:  # a UE8M0 byte is a float32's exponent field
            scale = (scale.to(tl.int32) << 23).to(tl.float32, bitcast=True)
        if FORMAT == 1:
            q = tl.load(w_ptr + e * stride_we + rows[None, :] * stride_wn + k[:, None], mask=mask, other=0.0)
            tile = q.to(tl.float32) * scale
        else:
            byte = tl.load(
                w_ptr + e * stride_we + rows[None, :] * stride_wn + k[:, None] // 2, mask=mask, other=0
            )
            code = (byte >> ((k[:, None] % 2) * 4).to(tl.uint8)) & 0xF
            mag = (code & 7).to(tl.int32)
            value = tl.where(
                mag < 4,
                mag.to(tl.float32) * 0.5,
                tl.where(mag < 6, (mag - 2).to(tl.float32), ((mag - 4) * 2).to(tl.float32)),
            )
            tile = tl.where(code >= 8, -value, value) * scale
    return tile.to(dtype)


@triton.jit
def _pairs_of_tile(sorted_ptr, pid_m, P, TOPK: tl.constexpr, BLOCK_M: tl.constexpr):
    pairs = tl.load(sorted_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
    return pairs, pairs < P


@triton.jit
def gate_up_kernel(
    x_ptr,
    w_ptr,
    s_ptr,
    sorted_ptr,
    block_expert_ptr,
    weights_ptr,
    h_ptr,
    P,
    N,
    K,
    stride_xt,
    stride_we,
    stride_wn,
    stride_se,
    stride_sn,
    limit,
    TOPK: tl.constexpr,
    CLAMPED: tl.constexpr,
    WEIGHT_IN_ACT: tl.constexpr,
    FORMAT: tl.constexpr,
    GROUP: tl.constexpr,
    UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    e = tl.load(block_expert_ptr + pid_m)
    if e >= 0:
        pairs, valid = _pairs_of_tile(sorted_ptr, pid_m, P, TOPK, BLOCK_M)
        token = tl.where(valid, pairs // TOPK, 0)
        n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = n < N
        dtype = x_ptr.dtype.element_ty
        acc_g = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        acc_u = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            a = tl.load(
                x_ptr + token[:, None] * stride_xt + k[None, :],
                mask=valid[:, None] & (k[None, :] < K),
                other=0.0,
            )
            g = _weight_tile(
                w_ptr,
                s_ptr,
                e,
                n,
                n_ok,
                k,
                K,
                stride_we,
                stride_wn,
                stride_se,
                stride_sn,
                FORMAT,
                GROUP,
                dtype,
            )
            acc_g = dot(a, g, acc_g, UPCAST)
            u = _weight_tile(
                w_ptr,
                s_ptr,
                e,
                n + N,
                n_ok,
                k,
                K,
                stride_we,
                stride_wn,
                stride_se,
                stride_sn,
                FORMAT,
                GROUP,
                dtype,
            )
            acc_u = dot(a, u, acc_u, UPCAST)
        gate = round_to(acc_g, dtype)  # the reference rounds each projection to the dtype
        up = round_to(acc_u, dtype)
        if CLAMPED:
            gate = tl.minimum(gate, limit)
            up = tl.minimum(tl.maximum(up, -limit), limit)
            h = tl.div_rn(gate, 1.0 + tl.exp(-gate)) * up
            if WEIGHT_IN_ACT:
                h = h * tl.load(weights_ptr + pairs, mask=valid, other=0.0).to(tl.float32)[:, None]
        else:
            h = round_to(tl.div_rn(gate, 1.0 + tl.exp(-gate)), dtype) * up
        tl.store(h_ptr + pairs[:, None] * N + n[None, :], h.to(dtype), mask=valid[:, None] & n_ok[None, :])


@triton.jit
def down_kernel(
    h_ptr,
    w_ptr,
    s_ptr,
    sorted_ptr,
    block_expert_ptr,
    weights_ptr,
    out_ptr,
    P,
    N,
    K,
    stride_we,
    stride_wn,
    stride_se,
    stride_sn,
    TOPK: tl.constexpr,
    WEIGHT_AFTER: tl.constexpr,
    FORMAT: tl.constexpr,
    GROUP: tl.constexpr,
    UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    e = tl.load(block_expert_ptr + pid_m)
    if e >= 0:
        pairs, valid = _pairs_of_tile(sorted_ptr, pid_m, P, TOPK, BLOCK_M)
        row = tl.where(valid, pairs, 0)
        n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = n < N
        dtype = h_ptr.dtype.element_ty
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            a = tl.load(
                h_ptr + row[:, None] * K + k[None, :], mask=valid[:, None] & (k[None, :] < K), other=0.0
            )
            b = _weight_tile(
                w_ptr,
                s_ptr,
                e,
                n,
                n_ok,
                k,
                K,
                stride_we,
                stride_wn,
                stride_se,
                stride_sn,
                FORMAT,
                GROUP,
                dtype,
            )
            acc = dot(a, b, acc, UPCAST)
        if WEIGHT_AFTER:
            w = round_to(tl.load(weights_ptr + row, mask=valid, other=0.0).to(tl.float32), dtype)
            acc = round_to(round_to(acc, dtype) * w[:, None], dtype)
        tl.store(out_ptr + row[:, None] * N + n[None, :], acc, mask=valid[:, None] & n_ok[None, :])


@triton.jit
def combine_kernel(
    pair_ptr,
    shared_ptr,
    out_ptr,
    N,
    TOPK: tl.constexpr,
    HAS_SHARED: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """out[t] = sum_j pair_out[t * k + j] (+ shared[t]) in float32, rounded once to out's dtype."""
    t, pid_n = tl.program_id(0), tl.program_id(1)
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = n < N
    dtype = out_ptr.dtype.element_ty
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    for j in tl.static_range(TOPK):
        acc += tl.load(pair_ptr + (t * TOPK + j) * N + n, mask=mask, other=0.0)
    if HAS_SHARED:
        acc += tl.load(shared_ptr + t * N + n, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + t * N + n, acc.to(dtype), mask=mask)
