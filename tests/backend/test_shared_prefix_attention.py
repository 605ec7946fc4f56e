"""Decode over a shared prompt's blocks read once (``layers/shared_prefix.py``): the split and
merge equal plain attention, and an engine batch of sequences sharing a long prefix decodes
the reference's greedy tokens."""

from __future__ import annotations

import pytest
import torch

from codeagent.backend.cache.tables import BlockTables
from codeagent.backend.engine import CacheConfig, Engine, Request
from codeagent.backend.layers.attention import causal_attention
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.layers.shared_prefix import SHARED_MIN_TOKENS, _merge, _shared, _tails
from codeagent.backend.loader import load_model


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_shared_rows_then_own_rows_merged_equal_attention_over_all(dtype):
    g, heads, kv_heads, dim, shared, tail = 3, 8, 2, 16, 200, 9
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(g, heads, dim, generator=gen).to(dtype)
    k_shared, v_shared = (torch.randn(shared, kv_heads, dim, generator=gen).to(dtype) for _ in range(2))
    out_s, lse_s = _shared(q, k_shared, v_shared, 0.25)
    tails = [
        tuple(torch.randn(tail + 3 * j, kv_heads, dim, generator=gen).to(dtype) for _ in range(2))
        for j in range(g)
    ]
    merged = _merge(out_s, lse_s, *_tails(q, tails, 0.25))
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    for j, (k_tail, v_tail) in enumerate(tails):  # tails of different lengths, padded together
        whole = causal_attention(
            q[j : j + 1], torch.cat([k_shared, k_tail]), torch.cat([v_shared, v_tail]), 0.25
        )
        torch.testing.assert_close(merged[j], whole[0].float(), atol=tolerance, rtol=tolerance)


def test_sequences_sharing_a_long_prompt_decode_the_reference_tokens(
    qwen3_moe_dir, qwen3_reference, reference_greedy
):
    model = load_model(qwen3_moe_dir).model
    engine = Engine(model, set(), cache=CacheConfig(block_size=8, num_blocks=512), max_batch_tokens=2048)
    gen = torch.Generator().manual_seed(5)
    prefix = torch.randint(0, 512, (SHARED_MIN_TOKENS + 60,), generator=gen).tolist()
    prompts = [prefix + torch.randint(0, 512, (3 + 5 * n,), generator=gen).tolist() for n in range(3)]
    seqs = [engine.add_request(Request(p, SamplingParams(max_tokens=6))) for p in prompts]
    while not all(seq.generated for seq in seqs):
        engine.step()
    tables = BlockTables(8, [s.table for s in seqs], [s.computed for s in seqs], [1, 1, 1])
    assert tables.shared_groups(SHARED_MIN_TOKENS) == [([0, 1, 2], len(prefix) // 8)]  # read once
    while engine.has_work():
        engine.step()
    for seq, prompt in zip(seqs, prompts, strict=True):
        assert seq.generated == reference_greedy(qwen3_reference, prompt, 6)
