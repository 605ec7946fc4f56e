"""Causal GQA attention reading K/V in place from the paged pool (Triton): decode and prefill.

The pool keeps, per layer, K and V as [num_blocks * block_size, KVH, D] tensors; a
sequence's block table maps its positions to rows (``cache/paged.py``). One step of the
engine attends every sequence's new queries over its cached prefix plus its new tokens:

1. the new K/V rows of all sequences are written at their slots (one ``index_copy_`` per
   stream for the whole batch), and each stream's length advances;
2. sequences with several new tokens (prefill chunks) go through the *prefill* launch:
   one program per (chunk of ``BLOCK_Q`` query tokens, KV head), whose rows are the chunk's
   tokens times the heads sharing that KV head (GQA without repeating K/V), causal with
   the offset of the cached prefix, looping over keys ``BLOCK_N`` at a time through the
   block table with an online softmax;
3. sequences with one new token (decode) go through the *decode* launch: the same kernel
   with the context split in ``num_splits`` ranges (flash-decoding), so a few long
   sequences still fill the GPU, then a reduce launch merges the partial softmaxes.

The batch layout (block tables, lengths, query offsets, tiles, slots: ``PagedBatch``,
``cache/tables.py``) is built once per step from the runner's block tables and read by
every layer. Limits: head_dim <= 256 in one tile; float32 uses IEEE dots
(slow on tensor cores, but token-exact against the reference).
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

from codeagent.backend.cache.tables import PagedBatch, build_batch
from codeagent.backend.kernels.common import INTERPRETING, dot, next_pow2, upcast


@triton.jit
def _attn_kernel(
    q_ptr, k_ptr, v_ptr, out_ptr, part_acc_ptr, part_ml_ptr,
    table_ptr, ctx_ptr, qstart_ptr, tile_seq_ptr, tile_q_ptr,
    stride_qt, stride_qh, stride_kr, stride_kh, stride_ot, stride_oh, stride_tab,
    scale, H, G, D, block_size, split_len,
    BLOCK_Q: tl.constexpr, GP: tl.constexpr, ROWS: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr, NUM_SPLITS: tl.constexpr, UPCAST: tl.constexpr,
):  # fmt: skip
    tile, kvh, split = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    seq = tl.load(tile_seq_ptr + tile)
    q0 = tl.load(tile_q_ptr + tile)
    qs = tl.load(qstart_ptr + seq)
    q_len = tl.load(qstart_ptr + seq + 1) - qs
    ctx = tl.load(ctx_ptr + seq)
    cached = ctx - q_len
    r = tl.arange(0, ROWS)
    tok = q0 + r // GP
    head = kvh * G + r % GP
    row_ok = (r < BLOCK_Q * GP) & (tok < q_len) & (r % GP < G)
    d = tl.arange(0, BLOCK_D)
    d_ok = d < D
    q = tl.load(
        q_ptr + (qs + tok)[:, None] * stride_qt + head[:, None] * stride_qh + d[None, :],
        mask=row_ok[:, None] & d_ok[None, :],
        other=0.0,
    )
    q_pos = cached + tok
    hi = tl.minimum(ctx, cached + tl.minimum(q0 + BLOCK_Q, q_len))  # causal: the tile's last query
    lo = split * split_len
    hi = tl.minimum(hi, lo + split_len)
    m = tl.full([ROWS], float("-inf"), tl.float32)
    denom = tl.zeros([ROWS], tl.float32)
    acc = tl.zeros([ROWS, BLOCK_D], tl.float32)
    for n0 in range(lo, hi, BLOCK_N):
        pos = n0 + tl.arange(0, BLOCK_N)
        p_ok = pos < hi
        block = tl.load(table_ptr + seq * stride_tab + pos // block_size, mask=p_ok, other=0)
        rows = block.to(tl.int64) * block_size + pos % block_size
        kv_off = rows[:, None] * stride_kr + kvh * stride_kh + d[None, :]
        kv_mask = p_ok[:, None] & d_ok[None, :]
        k = tl.load(k_ptr + kv_off, mask=kv_mask, other=0.0)
        s = dot(q, tl.trans(k), tl.zeros([ROWS, BLOCK_N], tl.float32), UPCAST) * scale
        s = tl.where(p_ok[None, :] & (pos[None, :] <= q_pos[:, None]), s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp(s - m_safe[:, None])
        alpha = tl.exp(m - m_safe)
        v = tl.load(v_ptr + kv_off, mask=kv_mask, other=0.0)
        denom = denom * alpha + tl.sum(p, axis=1)
        acc = dot(p.to(v.dtype), v, acc * alpha[:, None], UPCAST)
        m = m_new
    if NUM_SPLITS == 1:
        out = acc / tl.where(denom == 0.0, 1.0, denom)[:, None]
        o_off = (qs + tok)[:, None] * stride_ot + head[:, None] * stride_oh + d[None, :]
        tl.store(out_ptr + o_off, out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & d_ok[None, :])
    else:
        part = (tile * H + head) * NUM_SPLITS + split  # [ROWS]
        tl.store(part_acc_ptr + part[:, None] * D + d[None, :], acc, mask=row_ok[:, None] & d_ok[None, :])
        tl.store(part_ml_ptr + part * 2, m, mask=row_ok)
        tl.store(part_ml_ptr + part * 2 + 1, denom, mask=row_ok)


@triton.jit
def _reduce_kernel(
    part_acc_ptr, part_ml_ptr, out_ptr, tile_seq_ptr, qstart_ptr, stride_ot, stride_oh, H, D,
    NUM_SPLITS: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    tile, head = tl.program_id(0), tl.program_id(1)
    row = tl.load(qstart_ptr + tl.load(tile_seq_ptr + tile))
    s = tl.arange(0, BLOCK_S)
    s_ok = s < NUM_SPLITS
    part = (tile * H + head) * NUM_SPLITS + s
    m = tl.load(part_ml_ptr + part * 2, mask=s_ok, other=float("-inf"))
    denom = tl.load(part_ml_ptr + part * 2 + 1, mask=s_ok, other=0.0)
    top = tl.max(m, axis=0)
    w = tl.where(m == float("-inf"), 0.0, tl.exp(m - tl.where(top == float("-inf"), 0.0, top)))
    total = tl.sum(denom * w, axis=0)
    d = tl.arange(0, BLOCK_D)
    acc = tl.load(
        part_acc_ptr + part[:, None] * D + d[None, :], mask=s_ok[:, None] & (d[None, :] < D), other=0.0
    )
    out = tl.sum(acc * w[:, None], axis=0) / tl.where(total == 0.0, 1.0, total)
    tl.store(out_ptr + row * stride_ot + head * stride_oh + d, out.to(out_ptr.dtype.element_ty), mask=d < D)


def _tiles(heads: int, kv_heads: int, head_dim: int) -> tuple[int, int, int, int]:
    """(BLOCK_Q, GP, ROWS, BLOCK_N) for prefill."""
    gp = next_pow2(heads // kv_heads)
    rows_target = 16 if INTERPRETING else 64
    block_q = max(1, rows_target // gp)
    return block_q, gp, max(16, block_q * gp), 16 if INTERPRETING else (64 if head_dim <= 128 else 32)


def default_splits(batch: PagedBatch, decodes: int, kv_heads: int, block_n: int, device: torch.device) -> int:
    if INTERPRETING or device.type != "cuda":
        return max(1, min(4, triton.cdiv(batch.max_ctx, 4 * block_n)))
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    wanted = triton.cdiv(2 * sms, max(1, decodes * kv_heads))
    return max(1, min(wanted, triton.cdiv(batch.max_ctx, 4 * block_n), 64))


def attend(
    q: torch.Tensor,
    k_pool: torch.Tensor,
    v_pool: torch.Tensor,
    batch: PagedBatch,
    scale: float,
    num_splits: int | None = None,
) -> torch.Tensor:
    """q [T, H, D] (the new tokens' queries, their K/V already in the pool) -> [T, H, D]."""
    _, heads, d = q.shape
    kv_heads = k_pool.shape[1]
    out = torch.empty_like(q)
    block_q, gp, rows, block_n = _tiles(heads, kv_heads, d)
    common = dict(
        stride_qt=q.stride(0), stride_qh=q.stride(1), stride_kr=k_pool.stride(0), stride_kh=k_pool.stride(1),
        stride_ot=out.stride(0), stride_oh=out.stride(1), stride_tab=batch.table.stride(0), scale=scale, H=heads,
        G=heads // kv_heads, D=d, block_size=batch.block_size, GP=gp, BLOCK_N=block_n,
        BLOCK_D=next_pow2(d, 16), UPCAST=upcast(),
    )  # fmt: skip
    tables = (batch.table, batch.ctx, batch.qstart)
    tile_seq, tile_q = batch.prefill_tiles(block_q)
    if tile_seq.numel():
        _attn_kernel[(tile_seq.numel(), kv_heads, 1)](
            q, k_pool, v_pool, out, out, out, *tables, tile_seq, tile_q,
            split_len=batch.max_ctx, BLOCK_Q=block_q, ROWS=rows, NUM_SPLITS=1, **common,
        )  # fmt: skip
    decodes = batch.decode.numel()
    if decodes:
        splits = num_splits or default_splits(batch, decodes, kv_heads, block_n, q.device)
        split_len = triton.cdiv(triton.cdiv(batch.max_ctx, splits), block_n) * block_n
        zeros = torch.zeros_like(batch.decode)
        part_acc = torch.empty(decodes * heads * splits, d, dtype=torch.float32, device=q.device)
        part_ml = torch.empty(decodes * heads * splits, 2, dtype=torch.float32, device=q.device)
        target = out if splits == 1 else part_acc
        _attn_kernel[(decodes, kv_heads, splits)](
            q, k_pool, v_pool, target, part_acc, part_ml, *tables, batch.decode, zeros,
            split_len=split_len, BLOCK_Q=1, ROWS=max(16, gp), NUM_SPLITS=splits, **common,
        )  # fmt: skip
        if splits > 1:
            _reduce_kernel[(decodes, heads)](
                part_acc, part_ml, out, batch.decode, batch.qstart, out.stride(0), out.stride(1), heads, d,
                NUM_SPLITS=splits, BLOCK_S=next_pow2(splits), BLOCK_D=next_pow2(d),
            )  # fmt: skip
    return out


def step(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, caches: list[Any], batch: PagedBatch, scale: float
) -> torch.Tensor:
    """One layer's attention for the engine: write the new K/V rows [T, KVH, D] of every sequence
    into the pool (caches: ``layers.attention.KVCache`` over ``PagedRows``, in the batch's order),
    advance them, attend -> [T, H, D]."""
    k_pool, v_pool = caches[0].k.tensor, caches[0].v.tensor
    k_pool.index_copy_(0, batch.slots, k)
    v_pool.index_copy_(0, batch.slots, v)
    for cache, n in zip(caches, batch.sizes, strict=True):
        cache.k.length += n
        cache.v.length += n
    return attend(q, k_pool, v_pool, batch, scale)


__all__ = ["PagedBatch", "attend", "build_batch", "step"]
