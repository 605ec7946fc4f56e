"""Real model shapes (bf16) on a GPU: the tile sizes the interpreter tests never compile.

Qwen3-Coder-30B-A3B's MoE and attention, DeepSeek-V4-Flash's FP4 experts, 512-wide latent
with 64 heads and indexer, and a full vocabulary for sampling, each against its torch
reference within bf16 rounding. Skipped without CUDA, with the reason shown.
"""

from __future__ import annotations

import pytest
import torch

from codeagent.backend.kernels import fused_moe, indexer, paged_attention, sampling, sink_attention
from codeagent.backend.layers.attention import paged_attention_ref
from codeagent.backend.layers.moe import experts_forward
from codeagent.backend.layers.sampler import SamplingParams, filter_logits
from codeagent.backend.models.deepseek_v4.attention import attend
from codeagent.backend.models.deepseek_v4.indexer import indexer_scores, top_k_visible, visible_entries
from codeagent.backend.models.deepseek_v4.moe import routed_experts
from codeagent.backend.quant import dequantize_fp4
from codeagent.bench.kernels import tune

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
CUDA = torch.device("cuda")


@pytest.mark.parametrize("tokens", [1, 64, 600])
def test_qwen3_coder_moe(tokens):
    shape = tune.MOE_SHAPES["qwen3-coder-30b-a3b"]
    w13, w2 = tune.expert_weights(shape, "plain", CUDA)
    x = torch.randn(tokens, shape.hidden, device=CUDA, dtype=torch.bfloat16)
    weights, ids = tune.routed(tokens, shape, CUDA)
    weights = weights.to(torch.bfloat16)
    got = fused_moe.fused_moe(x, w13, w2, weights, ids)
    torch.testing.assert_close(got, experts_forward(x, w13, w2, weights, ids.long()), atol=3e-2, rtol=3e-2)


def test_deepseek_v4_fp4_experts():
    shape = tune.MoeShape("v4-slice", 16, 6, 4096, 2048, True)  # Flash's widths, fewer experts
    q13, q2 = tune.expert_weights(shape, "fp4", CUDA)
    d13 = torch.stack([dequantize_fp4(q13.weight[e], q13.scale[e]) for e in range(16)]).to(torch.bfloat16)
    d2 = torch.stack([dequantize_fp4(q2.weight[e], q2.scale[e]) for e in range(16)]).to(torch.bfloat16)
    x = torch.randn(8, shape.hidden, device=CUDA, dtype=torch.bfloat16)
    weights, ids = tune.routed(8, shape, CUDA)
    got = fused_moe.fused_moe(x, q13, q2, weights, ids, clamped=True, limit=10.0, out_dtype=torch.float32)
    want = routed_experts(x, d13, d2, weights, ids.long(), 10.0)
    torch.testing.assert_close(got, want, atol=5e-2, rtol=3e-2)


@pytest.mark.parametrize("sizes", [[1] * 8, [512], [1, 300, 1]])
def test_paged_attention_at_4k(sizes):
    cached = [4096 - s for s in sizes]
    blocks = sum(-(-4096 // 32) for _ in sizes)
    order = torch.randperm(blocks).tolist()
    tables = [order[i :: len(sizes)] for i in range(len(sizes))]
    batch = paged_attention.build_batch(tables, cached, sizes, 32, CUDA)
    k_pool = torch.randn(blocks * 32, 4, 128, device=CUDA, dtype=torch.bfloat16)
    v_pool = torch.randn_like(k_pool)
    q = torch.randn(sum(sizes), 32, 128, device=CUDA, dtype=torch.bfloat16)
    got = paged_attention.attend(q, k_pool, v_pool, batch, 128**-0.5)
    torch.testing.assert_close(
        got, paged_attention_ref(q, k_pool, v_pool, batch, 128**-0.5), atol=2e-2, rtol=2e-2
    )


def test_deepseek_v4_latent_attention_and_indexer():
    t, entries = 4, 1024
    keys = torch.randn(128 + entries, 512, device=CUDA, dtype=torch.bfloat16)
    visible = torch.rand(t, keys.shape[0], device=CUDA) < 0.5
    q, sinks = torch.randn(t, 64, 512, device=CUDA, dtype=torch.bfloat16), torch.randn(64, device=CUDA)
    got = sink_attention.masked_sink_attention(q, keys, visible, sinks, 512**-0.5)
    torch.testing.assert_close(got, attend(q, keys, visible, sinks, 512**-0.5), atol=2e-2, rtol=2e-2)
    iq, ik = torch.randn(t, 64, 128, device=CUDA), torch.randn(entries, 128, device=CUDA)
    hw, pos = torch.randn(t, 64, device=CUDA), torch.tensor([4095, 3000, 100, 7], device=CUDA)
    scores, _ = indexer.scores(iq, ik, hw)
    torch.testing.assert_close(scores, indexer_scores(iq, ik, hw), atol=1e-3, rtol=1e-4)
    chosen = indexer.selection(iq, ik, hw, pos, 512, 4)
    assert torch.equal(chosen, top_k_visible(scores, visible_entries(pos, entries, 4), 512))


def test_sampling_over_a_full_vocabulary():
    logits = torch.randn(4, 151936, device=CUDA) * 4
    params = [SamplingParams(temperature=0.7, top_k=50, top_p=0.95, min_p=0.01)] * 4
    want = torch.stack([filter_logits(row, params[0]) > float("-inf") for row in logits])
    assert torch.equal(sampling.keep_mask(logits, params), want)
