"""The gated delta rule (Qwen3-Next's linear attention) in Triton: chunked prefill over a flattened
batch of sequences, and the one-token decode step.

Per head the state S [Dk, Dv] (float32) follows, token by token (``layers.gated_delta``'s
``recurrent_gated_delta_rule`` is the specification):

    S = S * exp(g_t);  delta_t = beta_t * (v_t - S^T k_t);  S = S + k_t delta_t^T;  o_t = S^T q_t

**Prefill** takes chunks of ``CHUNK`` tokens. Within a chunk starting from state S0, with G_t the
cumulative sum of g over the chunk up to t (so exp(G_t - G_i) <= 1 for i <= t, never a division
by a decay that may underflow), unrolling the recurrence gives the corrections

    delta = (I + A)^-1 (diag(beta) V - diag(beta exp(G)) K S0),
    A[t, i] = beta_t exp(G_t - G_i) k_t . k_i   for i < t (strictly lower triangular),

so with T = (I + A)^-1, U = T diag(beta) V and W = T diag(beta exp(G)) K, ``delta = U - W S0``: U
and W do not depend on the state and are computed for every chunk at once (``_prepare_kernel``:
one program per chunk and head; T by forward substitution over the chunk's rows, in registers).
The state then passes from chunk to chunk (``_chunks_kernel``: one program per sequence, head and
block of Dv columns, looping over that sequence's chunks), each chunk giving

    O = diag(exp(G)) Q S0 + (M o Q K^T) delta,    M[t, i] = exp(G_t - G_i) for i <= t, else 0
    S = exp(G_last) S0 + (diag(exp(G_last - G)) K)^T delta.

Sequences are given as offsets into the flattened tokens (``cu_seqlens``, [N + 1]), each with its
initial state; chunks restart at every sequence's first token, so a sequence's result does not
depend on the others in the batch.

**Decode** (``decode_step``): one program per sequence, head and block of Dv columns; the state is
read, updated and written back in place, in float32.

Query/key heads may be fewer than value heads (Qwen3-Next: 16 and 32): value head h reads
query/key head ``h // (H / Hk)``, as ``repeat_interleave`` over the heads would give them.

Limits: every product runs in float32 with IEEE dots (activations of any float dtype are read as
float32; outputs rounded once to v's dtype): exact enough for a triangular solve, but slower than
the tensor cores' bf16 / TF32 paths; the forward substitution is 63 sequential row steps per chunk
(a blocked inverse of 16 x 16 diagonal blocks would be faster on a GPU); the state pass is
sequential over a sequence's chunks, parallel only over sequences, heads and Dv blocks; head sizes
up to 256. ``cu_seqlens`` is read on the host (a device sync per prefill call).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
import triton
import triton.language as tl

from codeagent.backend.kernels.common import INTERPRETING, next_pow2

CHUNK = 64
MAX_HEAD_DIM = 256


@triton.jit
def _prepare_kernel(
    k_ptr, v_ptr, g_ptr, beta_ptr, w_ptr, u_ptr, gcum_ptr, start_ptr, end_ptr,
    stride_kt, stride_kh, stride_vt, stride_vh, H, GROUP, DK, DV,
    CHUNK: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_V: tl.constexpr,
):  # fmt: skip
    """W [C, Dk], U [C, Dv] and the cumulative decay G [C] of one chunk and head."""
    c, h = tl.program_id(0), tl.program_id(1)
    start = tl.load(start_ptr + c)
    end = tl.load(end_ptr + c)
    r = tl.arange(0, CHUNK)
    t = start + r
    ok = t < end
    dk = tl.arange(0, BLOCK_K)
    dv = tl.arange(0, BLOCK_V)
    k_mask = ok[:, None] & (dk < DK)[None, :]
    v_mask = ok[:, None] & (dv < DV)[None, :]
    k = tl.load(
        k_ptr + t[:, None] * stride_kt + (h // GROUP) * stride_kh + dk[None, :], mask=k_mask, other=0.0
    )
    v = tl.load(v_ptr + t[:, None] * stride_vt + h * stride_vh + dv[None, :], mask=v_mask, other=0.0)
    k, v = k.to(tl.float32), v.to(tl.float32)
    g = tl.load(g_ptr + t * H + h, mask=ok, other=0.0)
    beta = tl.load(beta_ptr + t * H + h, mask=ok, other=0.0)
    big_g = tl.cumsum(g, axis=0)  # [C]
    lower = r[:, None] > r[None, :]
    gram = tl.dot(k, tl.trans(k), input_precision="ieee")  # [C, C]
    a = tl.where(
        lower, beta[:, None] * tl.exp(tl.where(lower, big_g[:, None] - big_g[None, :], 0.0)) * gram, 0.0
    )
    # T = (I + A)^-1, lower unit triangular: row i = e_i - sum_{j<i} A[i, j] T[j, :]
    inv = tl.where(r[:, None] == r[None, :], 1.0, 0.0)
    for i in range(1, CHUNK):
        a_i = tl.sum(tl.where(r[:, None] == i, a, 0.0), axis=0)  # [C]: A[i, j] over j
        correction = tl.sum(a_i[:, None] * inv, axis=0)  # [C]
        inv = tl.where(r[:, None] == i, inv - correction[None, :], inv)
    u = tl.dot(inv, v * beta[:, None], input_precision="ieee")  # [C, Dv]
    w = tl.dot(inv, k * (beta * tl.exp(big_g))[:, None], input_precision="ieee")  # [C, Dk]
    tl.store(w_ptr + (t[:, None] * H + h) * DK + dk[None, :], w, mask=k_mask)
    tl.store(u_ptr + (t[:, None] * H + h) * DV + dv[None, :], u, mask=v_mask)
    tl.store(gcum_ptr + t * H + h, big_g, mask=ok)


@triton.jit
def _chunks_kernel(
    q_ptr, k_ptr, w_ptr, u_ptr, gcum_ptr, state_ptr, final_ptr, out_ptr, cu_ptr,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_ot, stride_oh, H, GROUP, DK, DV,
    CHUNK: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_V: tl.constexpr,
):  # fmt: skip
    """One sequence, head and block of Dv columns: the state through every chunk, and the outputs."""
    n, h, vb = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    start = tl.load(cu_ptr + n)
    end = tl.load(cu_ptr + n + 1)
    dk = tl.arange(0, BLOCK_K)
    dv = vb * BLOCK_V + tl.arange(0, BLOCK_V)
    s_off = ((n * H + h) * DK + dk[:, None]) * DV + dv[None, :]
    s_mask = (dk < DK)[:, None] & (dv < DV)[None, :]
    state = tl.load(state_ptr + s_off, mask=s_mask, other=0.0)  # [Dk, BV] float32
    r = tl.arange(0, CHUNK)
    causal = r[:, None] >= r[None, :]
    qk_head = h // GROUP
    for c0 in range(start, end, CHUNK):
        t = c0 + r
        ok = t < end
        k_mask = ok[:, None] & (dk < DK)[None, :]
        v_mask = ok[:, None] & (dv < DV)[None, :]
        q = tl.load(
            q_ptr + t[:, None] * stride_qt + qk_head * stride_qh + dk[None, :], mask=k_mask, other=0.0
        )
        k = tl.load(
            k_ptr + t[:, None] * stride_kt + qk_head * stride_kh + dk[None, :], mask=k_mask, other=0.0
        )
        q, k = q.to(tl.float32), k.to(tl.float32)
        w = tl.load(w_ptr + (t[:, None] * H + h) * DK + dk[None, :], mask=k_mask, other=0.0)
        u = tl.load(u_ptr + (t[:, None] * H + h) * DV + dv[None, :], mask=v_mask, other=0.0)
        big_g = tl.load(gcum_ptr + t * H + h, mask=ok, other=0.0)
        g_last = tl.load(gcum_ptr + (tl.minimum(c0 + CHUNK, end) - 1) * H + h)
        delta = u - tl.dot(w, state, input_precision="ieee")  # [C, BV]
        scores = tl.dot(q, tl.trans(k), input_precision="ieee")  # [C, C]
        scores = scores * tl.exp(tl.where(causal, big_g[:, None] - big_g[None, :], float("-inf")))
        out = tl.dot(q, state, input_precision="ieee") * tl.exp(big_g)[:, None]
        out = tl.dot(scores, delta, out, input_precision="ieee")
        tl.store(
            out_ptr + t[:, None] * stride_ot + h * stride_oh + dv[None, :],
            out.to(out_ptr.dtype.element_ty),
            mask=v_mask,
        )
        carried = k * tl.exp(g_last - big_g)[:, None]
        state = tl.dot(tl.trans(carried), delta, state * tl.exp(g_last), input_precision="ieee")
    tl.store(final_ptr + s_off, state, mask=s_mask)


@triton.jit
def _step_kernel(
    q_ptr, k_ptr, v_ptr, g_ptr, beta_ptr, state_ptr, out_ptr,
    stride_qb, stride_qh, stride_kb, stride_kh, stride_vb, stride_vh, stride_ob, stride_oh,
    stride_sb, stride_sh, stride_sk, H, GROUP, DK, DV,
    BLOCK_K: tl.constexpr, BLOCK_V: tl.constexpr,
):  # fmt: skip
    """One token of one sequence, one head, one block of Dv columns; the state in place."""
    b, h, vb = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    dk = tl.arange(0, BLOCK_K)
    dv = vb * BLOCK_V + tl.arange(0, BLOCK_V)
    k_ok, v_ok = dk < DK, dv < DV
    qk_head = h // GROUP
    q = tl.load(q_ptr + b * stride_qb + qk_head * stride_qh + dk, mask=k_ok, other=0.0).to(tl.float32)
    k = tl.load(k_ptr + b * stride_kb + qk_head * stride_kh + dk, mask=k_ok, other=0.0).to(tl.float32)
    v = tl.load(v_ptr + b * stride_vb + h * stride_vh + dv, mask=v_ok, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + b * H + h)
    beta = tl.load(beta_ptr + b * H + h)
    s_ptrs = state_ptr + b * stride_sb + h * stride_sh + dk[:, None] * stride_sk + dv[None, :]
    s_mask = k_ok[:, None] & v_ok[None, :]
    state = tl.load(s_ptrs, mask=s_mask, other=0.0) * tl.exp(g)  # [Dk, BV]
    delta = beta * (v - tl.sum(state * k[:, None], axis=0))
    state = state + k[:, None] * delta[None, :]
    out = tl.sum(state * q[:, None], axis=0)
    tl.store(s_ptrs, state, mask=s_mask)
    tl.store(out_ptr + b * stride_ob + h * stride_oh + dv, out.to(out_ptr.dtype.element_ty), mask=v_ok)


def _check_heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, states: torch.Tensor) -> int:
    """The value heads a query/key head serves; raises ValueError for shapes the kernels do not take."""
    heads, dk, dv = v.shape[1], q.shape[-1], v.shape[-1]
    if q.shape != k.shape or heads % q.shape[1] or max(dk, dv) > MAX_HEAD_DIM:
        raise ValueError(f"gated delta: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if states.dtype != torch.float32 or tuple(states.shape[1:]) != (heads, dk, dv) or states.stride(-1) != 1:
        raise ValueError(f"gated delta: states must be float32 [N, {heads}, {dk}, {dv}], rows contiguous")
    if q.stride(-1) != 1 or k.stride(-1) != 1 or v.stride(-1) != 1:
        raise ValueError("gated delta: q, k, v need contiguous head dimensions")
    return heads // q.shape[1]


def _block_v(dv: int, block_v: int | None) -> int:
    return block_v or min(next_pow2(dv, 16), 32 if INTERPRETING else 64)


def prefill(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    states: torch.Tensor,
    cu_seqlens: torch.Tensor | Sequence[int],
    chunk: int = CHUNK,
    block_v: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """N sequences flattened: q, k [T, Hk, Dk]; v [T, H, Dv]; g (log decay, <= 0), beta [T, H];
    states [N, H, Dk, Dv] float32 (left unchanged); cu_seqlens [N + 1] (sequence n is tokens
    cu[n]:cu[n+1]) -> (out [T, H, Dv] in v's dtype, final states [N, H, Dk, Dv] float32). ``chunk``:
    tokens a chunk, a power of two from 16 (the same math, other roundings); ``block_v``: Dv columns
    a program of the state pass (a power of two from 16; default 64, 32 under the interpreter)."""
    if chunk < 16 or chunk & (chunk - 1):
        raise ValueError(f"gated delta: chunk {chunk} is not a power of two from 16")
    group = _check_heads(q, k, v, states)
    total, heads, dv = v.shape
    dk = q.shape[-1]
    offsets = [int(x) for x in (cu_seqlens.tolist() if isinstance(cu_seqlens, torch.Tensor) else cu_seqlens)]
    if len(offsets) != states.shape[0] + 1 or offsets[0] != 0 or offsets[-1] != total:
        raise ValueError(f"gated delta: cu_seqlens {offsets} for {states.shape[0]} states and {total} tokens")
    starts = [s for a, b in pairwise(offsets) for s in range(a, b, chunk)]
    ends = [min(s + chunk, b) for a, b in pairwise(offsets) for s in range(a, b, chunk)]
    device = v.device
    g, beta = g.to(torch.float32).contiguous(), beta.to(torch.float32).contiguous()
    w = torch.empty(total, heads, dk, dtype=torch.float32, device=device)
    u = torch.empty(total, heads, dv, dtype=torch.float32, device=device)
    big_g = torch.empty(total, heads, dtype=torch.float32, device=device)
    out = torch.empty_like(v)
    final = torch.empty_like(states, memory_format=torch.contiguous_format)
    block_k = next_pow2(dk, 16)
    if starts:
        _prepare_kernel[(len(starts), heads)](
            k, v, g, beta, w, u, big_g,
            torch.tensor(starts, dtype=torch.int32, device=device),
            torch.tensor(ends, dtype=torch.int32, device=device),
            k.stride(0), k.stride(1), v.stride(0), v.stride(1), heads, group, dk, dv,
            CHUNK=chunk, BLOCK_K=block_k, BLOCK_V=next_pow2(dv, 16),
        )  # fmt: skip
    bv = _block_v(dv, block_v)
    _chunks_kernel[(states.shape[0], heads, triton.cdiv(dv, bv))](
        q, k, w, u, big_g, states.contiguous(), final, out,
        torch.tensor(offsets, dtype=torch.int32, device=device),
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), out.stride(0), out.stride(1), heads, group, dk, dv,
        CHUNK=chunk, BLOCK_K=block_k, BLOCK_V=bv,
    )  # fmt: skip
    return out, final


def decode_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    states: torch.Tensor,
    block_v: int | None = None,
) -> torch.Tensor:
    """B sequences, one token each: q, k [B, Hk, Dk]; v [B, H, Dv]; g, beta [B, H]; states
    [B, H, Dk, Dv] float32 (a view is fine: rows contiguous), updated in place -> out [B, H, Dv]."""
    group = _check_heads(q, k, v, states)
    batch, heads, dv = v.shape
    dk = q.shape[-1]
    g, beta = g.to(torch.float32).contiguous(), beta.to(torch.float32).contiguous()
    out = torch.empty_like(v)
    bv = _block_v(dv, block_v)
    if batch:
        _step_kernel[(batch, heads, triton.cdiv(dv, bv))](
            q, k, v, g, beta, states, out,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
            out.stride(0), out.stride(1), states.stride(0), states.stride(1), states.stride(2),
            heads, group, dk, dv, BLOCK_K=next_pow2(dk, 16), BLOCK_V=bv,
        )  # fmt: skip
    return out


__all__ = ["CHUNK", "decode_step", "prefill"]
