"""Causal grouped-query attention over a per-sequence KV cache (torch reference).

``KVCache`` holds one sequence's keys and values for one layer as two row streams
[S, KVH, D]: pages of the engine's KV pool, or private growing tensors without an engine.
``attend`` appends the new rows and computes attention of the new queries over everything
cached, with the causal mask offset by what was cached before. It loops over sequences
(each reads its own rows gathered from the pool). With the engine's ``BlockTables`` (the
runner's, one per step), paged caches go to a kernel instead: with Triton,
``kernels/paged_attention`` writes every sequence's rows in one copy and reads the pool in
place through the block tables; on CPU, a decode batch takes the native kernel
(``kernels/native.c``), except sequences that share a prompt's blocks, which read them once
(``shared_prefix.py``). All are tested against this loop.
"""

from __future__ import annotations

from types import ModuleType

import torch
import torch.nn.functional as F

from codeagent.backend.cache.paged import GrowingRows, PagedRows, Rows
from codeagent.backend.cache.tables import BlockTables, PagedBatch
from codeagent.backend.kernels.dispatch import REFERENCE, Kernels
from codeagent.backend.layers import shared_prefix


class KVCache:
    """One layer's keys and values for one sequence: two row streams (paged or growing)."""

    def __init__(self, k: Rows | None = None, v: Rows | None = None) -> None:
        self.k: Rows = k if k is not None else GrowingRows()
        self.v: Rows = v if v is not None else GrowingRows()

    def __len__(self) -> int:
        return len(self.k)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the new rows [n, KVH, D]; return every row so far."""
        self.k.append(k)
        self.v.append(v)
        return self.k.read(), self.v.read()


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    caches: list[KVCache],
    sizes: list[int],
    scale: float,
    tables: BlockTables | None = None,
    kernels: Kernels = REFERENCE,
) -> torch.Tensor:
    """One layer's attention over a flattened batch (q [T, H, D], k, v [T, KVH, D]; ``sizes`` the
    sequences' new tokens): each sequence's new rows join its cache, then its queries attend.
    With the step's block tables (caches paged in one pool), one kernel call for the whole
    batch where a kernel runs; otherwise a loop."""
    if tables is not None and kernels.triton is not None:
        return kernels.triton.paged_attention_step(q, k, v, caches, tables.device_batch(q.device), scale)
    if tables is not None and kernels.native is not None and len(sizes) == q.shape[0]:  # decode
        out = _native_decode(q, k, v, caches, tables, scale, kernels.native)
        if out is not None:
            return out
    outs = []
    for cache, qs, ks, vs in zip(caches, q.split(sizes), k.split(sizes), v.split(sizes), strict=True):
        keys, values = cache.append(ks, vs)
        outs.append(causal_attention(qs, keys, values, scale))
    return torch.cat(outs)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """q [N, H, D] (the last N positions), k, v [S, KVH, D] with S >= N -> [N, H, D].

    PyTorch's fused scaled-dot-product attention, grouped heads never repeated over the
    context. One token (decode): each KV head's G query heads are its G queries. A fresh
    prompt (N == S): causal. A chunk after a cached prefix, on CPU: the prefix part (every
    query sees every key, the G heads folded into the queries) and the chunk's own causal
    part are two flash calls merged by their log-sum-exps, so no work is spent on masked
    keys; elsewhere an offset causal mask.
    """
    n, heads, dim = q.shape
    s, kv_heads, _ = k.shape
    group = heads // kv_heads
    kt, vt = k.transpose(0, 1)[None], v.transpose(0, 1)[None]  # [1, KVH, S, D]
    if n == 1:
        out = F.scaled_dot_product_attention(q.view(1, kv_heads, group, dim), kt, vt, scale=scale)
        return out.reshape(1, heads, dim)
    qt = q.transpose(0, 1)[None]  # [1, H, N, D]
    if n == s:
        out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=scale, enable_gqa=True)
        return out[0].transpose(0, 1)
    if q.device.type == "cpu" and n >= SPLIT_MIN_QUERIES:
        return _prefix_then_chunk(q, k, v, scale)
    mask = torch.arange(s, device=q.device)[None, :] <= torch.arange(s - n, s, device=q.device)[:, None]
    out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale, enable_gqa=True)
    return out[0].transpose(0, 1)


SPLIT_MIN_QUERIES = 16


def paged_attention_ref(
    q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, batch: PagedBatch, scale: float
) -> torch.Tensor:
    """The paged kernel's reference: q [T, H, D] over each sequence's rows gathered from the pools
    [rows, KVH, D] through its block table (the new rows already written) -> [T, H, D]."""
    outs, table, ctx, qstart = [], batch.table.cpu(), batch.ctx.tolist(), batch.qstart.tolist()
    for i, total in enumerate(ctx):
        pos = torch.arange(total)
        rows = (table[i, pos // batch.block_size].long() * batch.block_size + pos % batch.block_size).to(
            q.device
        )
        qs = q[qstart[i] : qstart[i + 1]]
        outs.append(causal_attention(qs, k_pool[rows], v_pool[rows], scale))
    return torch.cat(outs)


def _prefix_then_chunk(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    n, heads, dim = q.shape
    s, kv_heads, _ = k.shape
    group = heads // kv_heads
    folded = q.view(n, kv_heads, group, dim).permute(1, 0, 2, 3).reshape(1, kv_heads, n * group, dim)
    before = s - n
    kt, vt = k[:before].transpose(0, 1)[None], v[:before].transpose(0, 1)[None]
    out1, lse1 = flash(folded, kt, vt, 0.0, False, scale=scale)
    out1 = out1[0].view(kv_heads, n, group, dim).permute(1, 0, 2, 3).reshape(n, heads, dim)
    lse1 = lse1[0].view(kv_heads, n, group).permute(1, 0, 2).reshape(n, heads)
    kc = k[before:].repeat_interleave(group, dim=1).transpose(0, 1)[None]  # only the chunk's keys repeat
    vc = v[before:].repeat_interleave(group, dim=1).transpose(0, 1)[None]
    out2, lse2 = flash(q.transpose(0, 1)[None], kc, vc, 0.0, True, scale=scale)
    out2, lse2 = out2[0].transpose(0, 1), lse2[0].transpose(0, 1)
    top = torch.maximum(lse1, lse2)
    w1, w2 = torch.exp(lse1 - top), torch.exp(lse2 - top)
    return ((out1 * w1[..., None] + out2 * w2[..., None]) / (w1 + w2)[..., None]).to(q.dtype)


def _native_decode(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    caches: list[KVCache],
    tables: BlockTables,
    scale: float,
    native: ModuleType,
) -> torch.Tensor | None:
    """A decode batch (q [N, H, D], k, v [N, KVH, D]) whose caches are pages of one pool, in one
    native call (the new rows written and attended over in place); None when the shapes do not
    fit the kernel. It reads each sequence's rows in place instead of gathering them, and was
    faster than PyTorch's flash attention at every context measured, one sequence or eight
    (``docs/bench/cpu-choices.md``)."""
    first_k, first_v = caches[0].k, caches[0].v
    assert isinstance(first_k, PagedRows) and isinstance(first_v, PagedRows), "block tables come with pages"
    if not native.fits_decode_attention(q, first_k.tensor):
        return None
    groups = tables.shared_groups(shared_prefix.SHARED_MIN_TOKENS)
    if groups:  # sequences sharing a prompt's blocks: those rows read once for them all
        return shared_prefix.decode(q, k, v, caches, tables, scale, native, groups)
    out = native.decode_attention(
        q, k, v, first_k.tensor, first_v.tensor, tables.padded(), tables.block_size, tables.lengths(), scale
    )
    for cache in caches:
        cache.k.length += 1  # type: ignore[attr-defined]
        cache.v.length += 1  # type: ignore[attr-defined]
    return out
