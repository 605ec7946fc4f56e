"""DeepSeek-V4 kernels against the model's torch functions: sink attention over chosen entries,
the indexer's scores and top-k (ties to the lowest index), compressor pooling, mHC weights."""

from __future__ import annotations

import pytest
import torch

from codeagent.backend.kernels import compressor, indexer, mhc, sink_attention
from codeagent.backend.models.deepseek_v4.attention import attend
from codeagent.backend.models.deepseek_v4.compressor import pool_windows
from codeagent.backend.models.deepseek_v4.indexer import indexer_scores, top_k_visible, visible_entries
from codeagent.backend.models.deepseek_v4.mhc import sinkhorn


def _mask(t: int, length: int, seed: int, device: str) -> torch.Tensor:
    visible = torch.rand(t, length, generator=torch.Generator().manual_seed(seed)) < 0.5
    visible[0] = False  # a query that sees nothing: the sink takes all the mass
    visible[-1, -1] = True
    return visible.to(device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sink_attention_with_the_shared_512_latent(randn, device, dtype):
    t, heads, dim, length = 3, 4, 512, 37
    q, keys, sinks = (
        randn(t, heads, dim, dtype=dtype),
        randn(length, dim, dtype=dtype, seed=1),
        randn(heads, seed=2),
    )
    visible = _mask(t, length, 3, device)
    got = sink_attention.masked_sink_attention(q, keys, visible, sinks, dim**-0.5)
    want = attend(q, keys, visible, sinks, dim**-0.5)
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    torch.testing.assert_close(got, want, **tol)
    assert torch.equal(got[0], torch.zeros_like(got[0]))


def test_sink_attention_over_index_lists_with_padding(randn, device):
    q, keys, sinks = randn(2, 20, 32), randn(50, 32, seed=1), randn(20, seed=2)
    index = torch.tensor([[49, 3, -1, 7, -1], [-1, -1, -1, -1, 0]], device=device)
    visible = torch.zeros(2, 50, dtype=torch.bool, device=device)
    visible[0, [49, 3, 7]] = True
    visible[1, 0] = True
    got = sink_attention.sink_attention(q, keys, index, sinks, 0.1)
    torch.testing.assert_close(got, attend(q, keys, visible, sinks, 0.1), atol=1e-5, rtol=1e-5)


def test_from_mask_lists_visible_entries_in_order(device):
    visible = torch.tensor([[False, True, False, True], [False, False, False, False]], device=device)
    assert sink_attention.from_mask(visible).tolist() == [[1, 3], [-1, -1]]


def test_indexer_scores(randn, device):
    q, keys, weights = randn(5, 16, 16), randn(23, 16, seed=1), randn(5, 16, seed=2)
    got, ranks = indexer.scores(q, keys, weights)
    torch.testing.assert_close(got, indexer_scores(q, keys, weights), atol=1e-5, rtol=1e-5)
    assert ranks is None


def test_indexer_partial_scores_of_a_ranks_heads_sum_to_the_whole(randn, device):
    """Split across 4 ranks, each scores its 4 of 16 heads, scaled by the whole 1/sqrt(16)."""
    q, keys, weights = randn(5, 16, 16), randn(23, 16, seed=1), randn(5, 16, seed=2)
    parts = [
        indexer.scores(q[:, h : h + 4], keys, weights[:, h : h + 4], all_heads=16)[0] for h in (0, 4, 8, 12)
    ]
    torch.testing.assert_close(sum(parts), indexer_scores(q, keys, weights), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        parts[1], indexer_scores(q[:, 4:8], keys, weights[:, 4:8], 16), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("k", [1, 3, 8, 50])
def test_indexer_top_k_breaks_ties_by_lowest_index(randn, device, k):
    """Two heads with mostly negative dots: many scores are exactly 0 and tie."""
    q, keys, weights = randn(6, 2, 16) - 1.0, randn(30, 16, seed=1) + 1.0, randn(6, 2, seed=2)
    positions = torch.tensor([0, 3, 7, 40, 100, 119], device=device)  # 0, 1, 2, 10, 25, 30 visible entries
    chosen = indexer.selection(q, keys, weights, positions, k, rate=4)
    score = indexer_scores(q, keys, weights)
    assert (score == 0).sum() > 10  # ties are real
    want = top_k_visible(score, visible_entries(positions, keys.shape[0], 4), k)
    assert torch.equal(chosen, want)


def test_indexer_folds_negative_zero_into_zero(device):
    """-0.0 and +0.0 scores tie (lowest index first), as in the reference's sort."""
    ranks = indexer.scores(
        torch.tensor([[[1.0] * 16]], device=device),
        torch.cat([-torch.ones(3, 16), torch.ones(1, 16)]).to(device),
        torch.tensor([[-1.0]], device=device),  # a negative head weight times ReLU(-16) = -0.0
        torch.tensor([15], device=device, dtype=torch.int32),
        4,
    )[1]
    assert indexer.select(ranks, 2).tolist() == [[True, True, False, False]]


def test_compressor_pooling_with_missing_slots(randn, device):
    kv, gate = randn(4, 8, 40), randn(4, 8, 40, seed=1)
    gate[0, :4] = float("-inf")  # the first window has no predecessor
    torch.testing.assert_close(
        compressor.pool_windows(kv, gate), pool_windows(kv, gate), atol=1e-6, rtol=1e-5
    )


@pytest.mark.parametrize("tokens", [1, 7])
def test_hc_weights_and_sinkhorn(randn, device, tokens):
    n, iters, eps = 4, 20, 1e-6
    logits, scale, base = randn(tokens, (2 + n) * n), randn(3, seed=1).abs(), randn((2 + n) * n, seed=2)
    pre, post, comb = mhc.hc_weights(logits, scale, base, n, iters, eps)
    a_pre, a_post, a_comb = logits.split([n, n, n * n], dim=-1)
    b_pre, b_post, b_comb = base.split([n, n, n * n])
    torch.testing.assert_close(pre, torch.sigmoid(a_pre * scale[0] + b_pre) + eps, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(post, 2 * torch.sigmoid(a_post * scale[1] + b_post), atol=1e-6, rtol=1e-6)
    want = sinkhorn(a_comb.unflatten(-1, (n, n)) * scale[2] + b_comb.view(n, n), iters, eps)
    torch.testing.assert_close(comb, want, atol=1e-6, rtol=1e-5)
