"""Fused MoE pieces against the torch references: routing, alignment, grouped GEMMs, quantized experts."""

from __future__ import annotations

import pytest
import torch

from codeagent.backend.kernels import moe_align, moe_routing
from codeagent.backend.kernels.fused_moe import QuantizedExperts, fused_moe
from codeagent.backend.layers.moe import experts_forward, softmax_topk
from codeagent.backend.models.deepseek_v4.moe import expert, route, routed_experts
from codeagent.backend.packed_weights import PackedExperts
from codeagent.backend.quant import dequantize_fp4, dequantize_fp8, quantize_fp4, quantize_fp8


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("experts,k", [(8, 2), (60, 6), (128, 8)])
def test_softmax_topk(randn, experts, k, normalize):
    logits = randn(9, experts)
    weights, ids = moe_routing.softmax_topk(logits, k, normalize)
    want_w, want_ids = softmax_topk(logits, k, normalize)
    assert torch.equal(ids.long(), want_ids)
    torch.testing.assert_close(weights, want_w, atol=1e-6, rtol=1e-6)


def test_sqrt_softplus_routing_with_bias_and_hash_table(randn, device):
    x, gate, bias = randn(7, 32), randn(16, 32, seed=1), randn(16, seed=2) * 0.1
    logits = x @ gate.T  # what route() computes first
    weights, ids = moe_routing.sqrt_softplus_route(logits, bias, None, 6, 1.5)
    want_w, want_ids = route(x, gate, bias, None, 6, 1.5)
    assert torch.equal(ids.long(), want_ids)
    torch.testing.assert_close(weights, want_w, atol=1e-6, rtol=1e-5)
    hashed = torch.randint(0, 16, (7, 6), generator=torch.Generator().manual_seed(3)).to(device)
    weights, ids = moe_routing.sqrt_softplus_route(logits, None, hashed, 6, 1.5)
    want_w, want_ids = route(x, gate, None, hashed, 6, 1.5)
    assert torch.equal(ids.long(), want_ids)
    torch.testing.assert_close(weights, want_w, atol=1e-6, rtol=1e-5)


def test_softplus_is_accurate_far_from_zero(device):
    logits = torch.tensor([[-30.0, -8.0, -1e-3, 0.0, 19.0, 21.0, 60.0, 3.0]], device=device)
    _, ids = moe_routing.sqrt_softplus_route(logits, None, torch.arange(8, device=device)[None], 8, 1.0)
    weights, _ = moe_routing.sqrt_softplus_route(logits, None, ids, 8, 8.0)
    scores = torch.nn.functional.softplus(logits).sqrt()
    torch.testing.assert_close(weights, scores / scores.sum() * 8.0, atol=0, rtol=1e-6)


@pytest.mark.parametrize(
    "tokens,experts,k,block_m", [(1, 8, 2, 16), (5, 8, 2, 4), (40, 16, 4, 16), (3, 128, 8, 16)]
)
def test_align_sorts_pads_and_skips_empty_experts(tokens, experts, k, block_m, device):
    generator = torch.Generator().manual_seed(tokens)
    ids = torch.stack([torch.randperm(experts, generator=generator)[:k] for _ in range(tokens)]).to(device)
    ids[ids == 1] = 0  # expert 1 never chosen
    got_sorted, got_experts = moe_align.align(ids, experts, block_m)
    want_sorted, want_experts = moe_align.align_ref(ids, experts, block_m)
    assert torch.equal(got_sorted, want_sorted) and torch.equal(got_experts, want_experts)
    pairs = tokens * k
    used = got_experts[got_experts >= 0]
    assert 1 not in used.tolist() and used.tolist() == sorted(used.tolist())
    real = got_sorted[got_sorted < pairs]
    assert sorted(real.tolist()) == list(range(pairs))  # every pair exactly once
    tile_of = torch.arange(got_sorted.numel(), device=device) // block_m
    assert torch.equal(got_experts[tile_of[got_sorted < pairs]].long(), ids.reshape(-1)[real.long()])


def _routed(tokens, experts, k, seed, device):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randperm(experts, generator=generator)[:k] for _ in range(tokens)]).to(device)
    weights = torch.rand(tokens, k, generator=generator).to(device)
    return weights, ids


@pytest.mark.parametrize("tokens", [1, 3, 17])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_moe_qwen_numerics(randn, device, tokens, dtype):
    hidden, inter, experts, k = 48, 40, 8, 2
    x = randn(tokens, hidden, dtype=dtype)
    w13, w2 = (
        randn(experts, 2 * inter, hidden, dtype=dtype, seed=1) * 0.2,
        randn(experts, hidden, inter, dtype=dtype, seed=2) * 0.2,
    )
    weights, ids = _routed(tokens, experts, k, 5, device)
    ids[:, 0] = torch.where(ids[:, 0] == 3, 4, ids[:, 0])
    ids[:, 1] = torch.where(ids[:, 1] == 3, 5 if tokens else 0, ids[:, 1])  # expert 3 gets no token
    weights = weights.to(dtype)
    got = fused_moe(x, w13, w2, weights, ids)
    want = experts_forward(x, w13, w2, weights, ids)
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 3e-2, "rtol": 3e-2}
    torch.testing.assert_close(got, want, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_moe_deepseek_numerics_with_shared_expert(randn, device, dtype):
    tokens, hidden, inter, experts, k, limit = 6, 32, 24, 8, 3, 1.5
    x = randn(tokens, hidden, dtype=dtype) * 3
    w13, w2 = (
        randn(experts, 2 * inter, hidden, dtype=dtype, seed=1),
        randn(experts, hidden, inter, dtype=dtype, seed=2),
    )
    weights, ids = _routed(tokens, experts, k, 7, device)
    shared = expert(x, w13[0, :inter], w13[0, inter:], w2[0], None, limit)
    got = fused_moe(
        x, w13, w2, weights, ids, clamped=True, limit=limit, shared=shared, out_dtype=torch.float32
    )
    want = routed_experts(x, w13, w2, weights, ids, limit) + shared
    tol = {"atol": 1e-4, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 0.15, "rtol": 3e-2}
    torch.testing.assert_close(got, want, **tol)


def test_fused_moe_with_a_given_tile_config(randn, device):
    x, w13, w2 = randn(9, 32), randn(4, 64, 32, seed=1) * 0.2, randn(4, 32, 32, seed=2) * 0.2
    weights, ids = _routed(9, 4, 2, 9, device)
    config = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 16, "num_warps": 2, "num_stages": 1}
    got = fused_moe(x, w13, w2, weights, ids, config=config)
    torch.testing.assert_close(got, experts_forward(x, w13, w2, weights, ids), atol=1e-5, rtol=1e-5)


def _quantized(w: torch.Tensor, kind: str) -> tuple[QuantizedExperts, torch.Tensor]:
    """Quantize each expert; return the packed form and what it decodes to (float32)."""
    if kind == "fp8":
        pairs = [quantize_fp8(e) for e in w]
        packed = QuantizedExperts.fp8(torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]))
        decoded = torch.stack([dequantize_fp8(*p) for p in pairs])
    else:
        pairs = [quantize_fp4(e) for e in w]
        packed = QuantizedExperts.fp4(torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]))
        decoded = torch.stack([dequantize_fp4(*p) for p in pairs])
    return packed, decoded


@pytest.mark.parametrize("kind", ["fp8", "fp4"])
def test_quantized_experts_decode_in_the_gemm(randn, device, kind):
    tokens, hidden, inter, experts, k = 5, 64, 160, 4, 2  # 160 rows: a partial 128-row FP8 block
    x = randn(tokens, hidden)
    w13, w2 = randn(experts, 2 * inter, hidden, seed=1), randn(experts, hidden, inter, seed=2)
    (q13, d13), (q2, d2) = _quantized(w13.cpu(), kind), _quantized(w2.cpu(), kind)
    q13 = QuantizedExperts(q13.weight.to(device), q13.scale.to(device), q13.format)
    q2 = QuantizedExperts(q2.weight.to(device), q2.scale.to(device), q2.format)
    weights, ids = _routed(tokens, experts, k, 11, device)
    got = fused_moe(x, q13, q2, weights, ids, clamped=True, limit=7.0, out_dtype=torch.float32)
    want = routed_experts(x, d13.to(device), d2.to(device), weights, ids, 7.0)
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)


def _packed(w: torch.Tensor, kind: str, parts: int, device: str) -> tuple[PackedExperts, torch.Tensor]:
    """The loader's storage: each checkpoint matrix (w1 and w3 apart: ``parts`` row blocks per
    expert) quantized on its own and filled in, UE8M0 scales kept as bytes. Returns it and
    what dequantizing at load gives (float32)."""
    quantize, dequantize = (quantize_fp8, dequantize_fp8) if kind == "fp8" else (quantize_fp4, dequantize_fp4)
    packed, decoded, rows = None, torch.empty_like(w), w.shape[1] // parts
    for e in range(w.shape[0]):
        for part in range(parts):
            q, scale = quantize(w[e, part * rows : (part + 1) * rows])
            if packed is None:
                packed = PackedExperts.empty(tuple(w.shape), q, scale, torch.device(device))
            packed.fill(e, slice(part * rows, (part + 1) * rows), q.to(device), scale.to(device))
            decoded[e, part * rows : (part + 1) * rows] = dequantize(q, scale)
    return packed, decoded.to(device)


@pytest.mark.parametrize("kind", ["fp8", "fp4"])
def test_packed_experts_of_the_loader_decode_in_the_gemm_and_just_in_time(randn, device, kind):
    """The kernel decodes the loader's packed experts in its tiles; the torch reference decodes
    each routed expert just before running it, exactly as dequantizing them all at load would."""
    tokens, hidden, inter, experts, k = 5, 64, 160, 4, 2  # 160 rows: a partial 128-row FP8 block
    x = randn(tokens, hidden)
    w13, w2 = randn(experts, 2 * inter, hidden, seed=1), randn(experts, hidden, inter, seed=2)
    (p13, d13), (p2, d2) = _packed(w13.cpu(), kind, 2, device), _packed(w2.cpu(), kind, 1, device)
    assert p13.scale.dtype == p2.scale.dtype == torch.uint8 and p13.shape == tuple(w13.shape)
    assert torch.equal(torch.stack([p13.expert(e, torch.float32) for e in range(experts)]), d13)
    weights, ids = _routed(tokens, experts, k, 11, device)
    want = routed_experts(x, d13, d2, weights, ids, 7.0)
    assert torch.equal(routed_experts(x, p13, p2, weights, ids, 7.0), want)
    got = fused_moe(x, p13, p2, weights, ids, clamped=True, limit=7.0, out_dtype=torch.float32)
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)
