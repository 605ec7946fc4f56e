"""Paged attention (decode, prefill, mixed) against gathered rows and the layer's reference."""

from __future__ import annotations

import pytest
import torch

from codeagent.backend.cache.paged import KVPool, KVStream, SeqBlocks
from codeagent.backend.cache.tables import BlockTables
from codeagent.backend.kernels import paged_attention as pa
from codeagent.backend.layers.attention import KVCache, causal_attention, paged_attention_ref


def _pool(randn, blocks: int, block_size: int, kv_heads: int, dim: int, dtype=torch.float32):
    rows = blocks * block_size
    return randn(rows, kv_heads, dim, dtype=dtype, seed=1), randn(rows, kv_heads, dim, dtype=dtype, seed=2)


def _tables(lengths: list[int], block_size: int, blocks: int, seed: int = 0) -> list[list[int]]:
    """Disjoint, shuffled block ids for each sequence (room for its whole context)."""
    order = torch.randperm(blocks, generator=torch.Generator().manual_seed(seed)).tolist()
    tables = []
    for n in lengths:
        need = -(-n // block_size)
        tables.append(order[:need])
        order = order[need:]
    return tables


@pytest.mark.parametrize(
    "heads,kv_heads,dim,block_size,cached,sizes",
    [
        (4, 2, 16, 4, [0], [1]),  # one token, nothing cached
        (4, 2, 16, 4, [9, 0, 3], [1, 1, 1]),  # decode only, contexts not a multiple of the block
        (4, 2, 16, 4, [0, 5], [7, 6]),  # prefill from nothing and after a cached prefix
        (6, 2, 32, 8, [13, 0, 30, 2], [1, 20, 1, 3]),  # mixed; 3 query heads per KV head
        (8, 1, 16, 16, [16], [16]),  # MQA, exactly block-aligned
    ],
)
def test_paged_attention_matches_gathered_reference(
    randn, device, heads, kv_heads, dim, block_size, cached, sizes
):
    total = [c + s for c, s in zip(cached, sizes, strict=True)]
    blocks = sum(-(-n // block_size) for n in total) + 3
    k_pool, v_pool = _pool(randn, blocks, block_size, kv_heads, dim)
    batch = pa.build_batch(_tables(total, block_size, blocks), cached, sizes, block_size, device)
    q = randn(sum(sizes), heads, dim, seed=3)
    want = paged_attention_ref(q, k_pool, v_pool, batch, dim**-0.5)
    torch.testing.assert_close(pa.attend(q, k_pool, v_pool, batch, dim**-0.5), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("splits", [1, 2, 3, 8])
def test_decode_splits_over_the_context_then_reduces(randn, device, splits):
    cached, block_size = [37, 5, 60], 4
    total = [c + 1 for c in cached]
    blocks = sum(-(-n // block_size) for n in total)
    k_pool, v_pool = _pool(randn, blocks, block_size, 2, 16)
    batch = pa.build_batch(_tables(total, block_size, blocks), cached, [1, 1, 1], block_size, device)
    q = randn(3, 4, 16, seed=4)
    got = pa.attend(q, k_pool, v_pool, batch, 0.25, num_splits=splits)
    torch.testing.assert_close(got, paged_attention_ref(q, k_pool, v_pool, batch, 0.25), atol=1e-5, rtol=1e-5)


def test_bfloat16_within_rounding(randn, device):
    cached, sizes, block_size = [6, 0], [1, 5], 4
    total = [c + s for c, s in zip(cached, sizes, strict=True)]
    k_pool, v_pool = _pool(randn, 6, block_size, 2, 16, torch.bfloat16)
    batch = pa.build_batch(_tables(total, block_size, 6), cached, sizes, block_size, device)
    q = randn(6, 4, 16, dtype=torch.bfloat16, seed=5)
    got = pa.attend(q, k_pool, v_pool, batch, 0.25)
    torch.testing.assert_close(got, paged_attention_ref(q, k_pool, v_pool, batch, 0.25), atol=2e-2, rtol=2e-2)


def test_a_row_past_the_blocks_is_refused(device):
    with pytest.raises(IndexError, match="past the sequence"):
        pa.build_batch([[0]], [3], [2], 4, device)


def test_step_writes_rows_and_attends_like_the_layer(randn, device):
    """Two engine steps (prefill chunk after a cached prefix, then decode) through KVCache over the pool."""
    pool = KVPool(
        [KVStream("0.k", 1, (2, 16), torch.float32), KVStream("0.v", 1, (2, 16), torch.float32)],
        4,
        12,
        device,
    )
    seqs = [SeqBlocks(pool, [5, 2, 9]), SeqBlocks(pool, [0, 7, 3, 11])]
    ours = [KVCache(s.rows("0.k"), s.rows("0.v")) for s in seqs]
    theirs = [KVCache(), KVCache()]  # growing tensors: the layer's reference path
    for step, sizes in enumerate([[3, 6], [1, 1], [4, 1]]):
        t = sum(sizes)
        q, k, v = (
            randn(t, 4, 16, seed=10 + step),
            randn(t, 2, 16, seed=20 + step),
            randn(t, 2, 16, seed=30 + step),
        )
        tables = BlockTables(4, [s.table for s in seqs], [len(c) for c in ours], sizes)
        got = pa.step(q, k, v, ours, tables.device_batch(torch.device(device)), 0.25)
        want = []
        for cache, qs, ks, vs in zip(theirs, q.split(sizes), k.split(sizes), v.split(sizes), strict=True):
            keys, values = cache.append(ks, vs)
            want.append(causal_attention(qs, keys, values, 0.25))
        torch.testing.assert_close(got, torch.cat(want), atol=1e-5, rtol=1e-5)
        assert [len(c) for c in ours] == [len(c) for c in theirs]
    torch.testing.assert_close(ours[1].k.read(), theirs[1].k.read())
