"""Decode attention for sequences that share a prompt's blocks: the shared rows read once.

Several agents started from one prompt (``fix --attempts N``) decode together with block
tables that begin with the same cached blocks (``scheduler.py`` makes them share the prefill,
``cache/tables.py``'s ``shared_groups`` finds them). Attending each over its whole context
reads those rows once per sequence; here a group's queries attend over the shared rows in
one call, every KV head's queries of every sequence folded together (one read of the rows
for the group), then each over its own tail (the rest of its prompt, its reply, the new
token), and the two parts are merged by their log-sum-exps:

    out = (out_shared * exp(lse_shared - m) + out_tail * exp(lse_tail - m)) / (same weights), m = max

Sequences in no group take the native decode kernel as before. The shared part is PyTorch's
CPU flash attention (it returns the log-sum-exp), over a view of the pool when the shared
blocks are consecutive there (the first sequence got them fresh, in order); the tails, small,
are gathered and padded into one batch. Softmax sums in float32.

Limits: CPU only (the native decode path; on a GPU the Triton kernel still reads the shared
blocks once per sequence); only the leading run of blocks common to a whole group is shared;
groups form only over ``SHARED_MIN_TOKENS`` shared rows, below which one kernel call for the
batch costs less.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch

SHARED_MIN_TOKENS = 1024


def decode(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    caches: list[Any],
    tables: Any,
    scale: float,
    native: ModuleType,
    groups: list[tuple[list[int], int]],
) -> torch.Tensor:
    """A decode batch (q [N, H, D], k, v [N, KVH, D]) over paged caches, the groups' shared rows
    read once; every new row joins its cache."""
    out = torch.empty_like(q)
    grouped = {i for members, _ in groups for i in members}
    rest = [i for i in range(q.shape[0]) if i not in grouped]
    if rest:
        pool_k, pool_v = caches[0].k.tensor, caches[0].v.tensor
        out[rest] = native.decode_attention(
            q[rest], k[rest], v[rest], pool_k, pool_v, tables.padded()[rest], tables.block_size,
            tables.lengths()[rest], scale,
        )  # fmt: skip
        for i in rest:
            caches[i].k.length += 1
            caches[i].v.length += 1
    for members, blocks in groups:
        for i in members:
            caches[i].k.append(k[i : i + 1])
            caches[i].v.append(v[i : i + 1])
        shared = blocks * tables.block_size
        first = caches[members[0]]
        out_s, lse_s = _shared(q[members], first.k.read(0, shared), first.v.read(0, shared), scale)
        tails = [(caches[i].k.read(shared), caches[i].v.read(shared)) for i in members]
        out_t, lse_t = _tails(q[members], tails, scale)
        out[members] = _merge(out_s, lse_s, out_t, lse_t).to(q.dtype)
    return out


def _shared(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """q [G, H, D] over the same rows k, v [S, KVH, D] -> out [G, H, D] (float32), lse [G, H]."""
    g, heads, dim = q.shape
    kv_heads = k.shape[1]
    group = heads // kv_heads
    folded = q.view(g, kv_heads, group, dim).permute(1, 0, 2, 3).reshape(1, kv_heads, g * group, dim)
    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    out, lse = flash(folded, k.transpose(0, 1)[None], v.transpose(0, 1)[None], 0.0, False, scale=scale)
    out = out[0].view(kv_heads, g, group, dim).permute(1, 0, 2, 3).reshape(g, heads, dim)
    lse = lse[0].view(kv_heads, g, group).permute(1, 0, 2).reshape(g, heads)
    return out.float(), lse.float()


def _tails(
    q: torch.Tensor, tails: list[tuple[torch.Tensor, torch.Tensor]], scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each query q[j] [H, D] over its own rows tails[j] (k, v [T_j, KVH, D]), padded to one batch
    -> out [G, H, D], lse [G, H] (float32)."""
    g, heads, dim = q.shape
    longest = max(k.shape[0] for k, _ in tails)
    kv_heads = tails[0][0].shape[1]
    keys = q.new_zeros((g, longest, kv_heads, dim), dtype=torch.float32)
    values = torch.zeros_like(keys)
    pad = torch.ones(g, longest, dtype=torch.bool)
    for j, (k, v) in enumerate(tails):
        keys[j, : k.shape[0]], values[j, : v.shape[0]], pad[j, : k.shape[0]] = k, v, False
    qg = q.float().view(g, kv_heads, heads // kv_heads, dim)
    scores = torch.einsum("bhgd,bthd->bhgt", qg, keys) * scale  # [G, KVH, group, T]
    scores.masked_fill_(pad[:, None, None, :], float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.einsum("bhgt,bthd->bhgd", torch.exp(scores - lse[..., None]), values)
    return out.reshape(g, heads, dim), lse.reshape(g, heads)


def _merge(
    out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor, lse_b: torch.Tensor
) -> torch.Tensor:
    """Two parts' attention outputs [..., H, D] over disjoint rows, by their log-sum-exps [..., H]."""
    top = torch.maximum(lse_a, lse_b)
    wa, wb = torch.exp(lse_a - top)[..., None], torch.exp(lse_b - top)[..., None]
    return (out_a * wa + out_b * wb) / (wa + wb)
