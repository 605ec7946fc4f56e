"""DeepSeek-V4 attention over gathered entries with a per-head sink (Triton).

Every query token attends its own list of entries of one shared K=V latent (width 512 in
the released models): the window's latents and, in CSA/HCA layers, the compressed
entries the indexer chose or that are visible. The list is given as indices into a
``keys`` [L, D] tensor, padded with -1 ([T, K]); ``from_mask`` turns the reference's
visibility mask [T, L] into such lists (entries in index order).

One program per (query token, BLOCK_H heads): the heads share the token's entries, so
each key tile [BLOCK_N, D] is loaded once and used for both the scores and the values
(MQA with K = V). Online softmax in float32; the sink logit joins the normaliser at the
end and carries no value, as ``models/deepseek_v4/attention.attend`` does. Limits: D <= 1024
in one tile; with bf16 the probabilities are rounded to bf16 for the value product (the
reference keeps them in float32).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from codeagent.backend.kernels.common import INTERPRETING, dot, next_pow2, upcast


@triton.jit
def _sink_attention_kernel(
    q_ptr, kv_ptr, index_ptr, sink_ptr, out_ptr,
    H, D, K, stride_qt, stride_qh, stride_kv, stride_it, stride_ot, stride_oh, scale,
    BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, UPCAST: tl.constexpr,
):  # fmt: skip
    t, pid_h = tl.program_id(0), tl.program_id(1)
    h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    h_ok = h < H
    d = tl.arange(0, BLOCK_D)
    d_ok = d < D
    q = tl.load(
        q_ptr + t * stride_qt + h[:, None] * stride_qh + d[None, :], mask=h_ok[:, None] & d_ok[None, :]
    )
    m = tl.full([BLOCK_H], float("-inf"), tl.float32)
    denom = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    for n0 in range(0, K, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        idx = tl.load(index_ptr + t * stride_it + n, mask=n < K, other=-1)
        ok = idx >= 0
        kv = tl.load(
            kv_ptr + idx.to(tl.int64)[:, None] * stride_kv + d[None, :],
            mask=ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        s = dot(q, tl.trans(kv), tl.zeros([BLOCK_H, BLOCK_N], tl.float32), UPCAST) * scale
        s = tl.where(ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp(s - m_safe[:, None])
        alpha = tl.exp(m - m_safe)
        denom = denom * alpha + tl.sum(p, axis=1)
        acc = dot(p.to(kv.dtype), kv, acc * alpha[:, None], UPCAST)
        m = m_new
    sink = tl.load(sink_ptr + h, mask=h_ok, other=0.0).to(tl.float32)
    top = tl.maximum(m, sink)
    keep = tl.exp(m - top)  # 0 when no entry was visible
    total = denom * keep + tl.exp(sink - top)
    out = acc * (keep / total)[:, None]
    tl.store(
        out_ptr + t * stride_ot + h[:, None] * stride_oh + d[None, :],
        out.to(out_ptr.dtype.element_ty),
        mask=h_ok[:, None] & d_ok[None, :],
    )


def sink_attention(
    q: torch.Tensor, keys: torch.Tensor, index: torch.Tensor, sinks: torch.Tensor, scale: float
) -> torch.Tensor:
    """q [T, H, D]; keys (= values) [L, D]; index [T, K] int (-1: none); sinks [H] -> [T, H, D]."""
    t, heads, d = q.shape
    out = torch.empty_like(q)
    if t == 0:
        return out
    q = q if q.stride(-1) == 1 else q.contiguous()
    keys = keys.contiguous()
    index = index.to(torch.int32).contiguous()
    block_d = next_pow2(d, 16)
    block_h = min(next_pow2(heads, 16), 16 if INTERPRETING or block_d > 256 else 32)
    block_n = 16 if INTERPRETING or block_d > 256 else 32
    _sink_attention_kernel[(t, triton.cdiv(heads, block_h))](
        q, keys, index, sinks.float().contiguous(), out,
        heads, d, index.shape[1], q.stride(0), q.stride(1), keys.stride(0), index.stride(0),
        out.stride(0), out.stride(1), scale,
        BLOCK_H=block_h, BLOCK_N=block_n, BLOCK_D=block_d, UPCAST=upcast(),
    )  # fmt: skip
    return out


def from_mask(visible: torch.Tensor) -> torch.Tensor:
    """visible [T, L] bool -> [T, K] entry indices in index order, -1 padded (K = most visible in a row)."""
    width = max(1, int(visible.sum(dim=1).max()) if visible.numel() else 1)
    order = torch.argsort((~visible).to(torch.int8), dim=1, stable=True)[:, :width]  # visible first
    return torch.where(visible.gather(1, order), order, -1).to(torch.int32)


def masked_sink_attention(
    q: torch.Tensor, keys: torch.Tensor, visible: torch.Tensor, sinks: torch.Tensor, scale: float
) -> torch.Tensor:
    """The reference's interface (a visibility mask [T, L]) over ``sink_attention``."""
    return sink_attention(q, keys, from_mask(visible), sinks, scale)
