"""The cases of ``codeagent bench kernels``: model shapes, and per kernel and shape a ``Case``.

A case holds the Triton call, the torch reference the layers run without Triton, and the
bytes moved and FLOPs by a simple model (each weight, cached row and activation touched
once). Shapes are Qwen3-Coder-30B-A3B's and DeepSeek-V4-Flash's (``TINY``: the same
families at tiny shapes, for Triton's CPU interpreter); the kernels and references are
imported when a case is built, so listing shapes imports no kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

BLOCK_TOKENS = 32


@dataclass(frozen=True)
class Dims:
    """What the kernels see of a model."""

    name: str
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    rope_dim: int
    experts: int
    topk: int
    inter: int
    vocab: int
    v4: bool = False
    index_heads: int = 0
    index_dim: int = 0
    index_topk: int = 0
    window: int = 0
    hc: int = 0


QWEN = Dims("qwen3-coder-30b-a3b", 2048, 32, 4, 128, 128, 128, 8, 768, 151936)
V4 = Dims("deepseek-v4-flash", 4096, 64, 1, 512, 64, 256, 6, 2048, 129280, True, 64, 128, 512, 128, 4)
TINY = {
    QWEN.name: replace(QWEN, hidden=64, heads=4, kv_heads=2, head_dim=16, rope_dim=16, experts=8, topk=2, inter=32,
                       vocab=512),
    V4.name: replace(
        V4, hidden=64, heads=4, head_dim=32, rope_dim=8, experts=8, inter=32, vocab=512, index_heads=4, index_dim=16,
        index_topk=4, window=8,
    ),
}  # fmt: skip


@dataclass
class Case:
    kernel: str
    model: str
    shape: str
    triton: Callable[[], object]
    torch: Callable[[], object] | None
    bytes: float
    flops: float
    reference: str = "torch"


def _rand(*shape: int, device: torch.device, dtype: torch.dtype = torch.bfloat16, scale: float = 1.0):
    return (torch.randn(*shape, device=device) * scale).to(dtype)


def pointwise_cases(d: Dims, t: int, device: torch.device) -> Iterator[Case]:
    from codeagent.backend.kernels import norm, rotary
    from codeagent.backend.layers.norm import rms_norm
    from codeagent.backend.layers.rotary import apply_rotary
    from codeagent.backend.models.deepseek_v4 import norm as v4norm
    from codeagent.backend.models.deepseek_v4 import rope as v4rope

    x, w = _rand(t, d.hidden, device=device), _rand(d.hidden, device=device)
    rounding = norm.WEIGHT_FIRST if d.v4 else norm.CAST_FIRST
    reference = v4norm.rms_norm if d.v4 else rms_norm
    yield Case(
        "rms_norm", d.name, f"T={t} D={d.hidden}", lambda: norm.rms_norm(x, w, 1e-6, rounding=rounding),
        lambda: reference(x, w, 1e-6), 4 * t * d.hidden + 2 * d.hidden, 4 * t * d.hidden,
    )  # fmt: skip
    q = _rand(t, d.heads, d.head_dim, device=device)
    cos, sin = torch.rand(t, d.rope_dim, device=device), torch.rand(t, d.rope_dim, device=device)
    ref = (lambda: v4rope.apply_interleaved_rope(q, cos[:, None], sin[:, None])) if d.v4 else (
        lambda: apply_rotary(q, cos, sin)
    )  # fmt: skip
    yield Case(
        "rotary", d.name, f"T={t} H={d.heads} D={d.head_dim} r={d.rope_dim}",
        lambda: rotary.apply_rotary(q, cos, sin, interleaved=d.v4), ref,
        4 * q.numel() + 8 * cos.numel(), 3 * t * d.heads * d.rope_dim,
    )  # fmt: skip


def moe_cases(d: Dims, t: int, device: torch.device, weights_cache: dict) -> Iterator[Case]:
    from codeagent.backend.kernels import moe_routing
    from codeagent.backend.layers.moe import softmax_topk
    from codeagent.backend.models.deepseek_v4.moe import route
    from codeagent.bench.kernels import tune

    gate, bias = (
        _rand(d.experts, d.hidden, device=device, scale=0.05),
        torch.randn(d.experts, device=device) * 0.01,
    )
    x = _rand(t, d.hidden, device=device)
    routes = (
        (
            lambda: moe_routing.sqrt_softplus_route(
                F.linear(x.float(), gate.float()), bias, None, d.topk, 1.5
            ),
            lambda: route(x, gate, bias, None, d.topk, 1.5),
        )
        if d.v4
        else (
            lambda: moe_routing.softmax_topk(F.linear(x, gate), d.topk, True),
            lambda: softmax_topk(F.linear(x, gate), d.topk, True),
        )
    )
    yield Case("moe_routing", d.name, f"T={t} E={d.experts} k={d.topk}", *routes,
               2 * t * d.hidden + 2 * d.experts * d.hidden, 2 * t * d.hidden * d.experts)  # fmt: skip
    shape = tune.MoeShape(d.name, d.experts, d.topk, d.hidden, d.inter, d.v4)
    weights, ids = tune.routed(t, shape, device)
    for fmt in ("plain", "fp4") if d.v4 else ("plain",):
        for f in {"plain", fmt}:
            if (d.name, f) not in weights_cache:  # built once per run: V4's bf16 experts are 13 GB
                weights_cache[d.name, f] = tune.expert_weights(shape, f, device)
        yield _moe_case(
            d, t, x, weights, ids, weights_cache[d.name, fmt], weights_cache[d.name, "plain"], fmt
        )


def _moe_case(d: Dims, t: int, x, weights, ids, packed, plain, fmt: str) -> Case:
    from codeagent.backend.kernels import fused_moe
    from codeagent.backend.layers.moe import experts_forward
    from codeagent.backend.models.deepseek_v4.moe import routed_experts

    touched = d.experts * (1 - (1 - d.topk / d.experts) ** t)  # expected distinct experts
    bytes_per_weight = 2 if fmt == "plain" else 0.5 + 4 / 32
    ref = (
        (lambda: routed_experts(x, plain[0], plain[1], weights, ids, 10.0))
        if d.v4
        else (lambda: experts_forward(x, plain[0], plain[1], weights, ids))
    )
    return Case(
        "fused_moe" + ("" if fmt == "plain" else f"_{fmt}"), d.name, f"T={t} E={d.experts} k={d.topk} I={d.inter}",
        lambda: fused_moe.fused_moe(x, packed[0], packed[1], weights, ids, clamped=d.v4, limit=10.0), ref,
        touched * 3 * d.hidden * d.inter * bytes_per_weight + 4 * t * d.hidden + 8 * t * d.topk * (d.inter + d.hidden),
        6 * t * d.topk * d.hidden * d.inter, "torch bf16" if fmt != "plain" else "torch",
    )  # fmt: skip


def sampling_case(d: Dims, t: int, device: torch.device) -> Case:
    from codeagent.backend.kernels import sampling
    from codeagent.backend.layers.sampler import SamplingParams, sample

    logits = torch.randn(t, d.vocab, device=device) * 3
    params = [SamplingParams(temperature=0.7, top_k=50, top_p=0.95)] * t
    generators = [torch.Generator().manual_seed(i) for i in range(t)]
    return Case("sampling", d.name, f"N={t} V={d.vocab} top-k 50 top-p 0.95",
                lambda: sampling.sample(logits, params, generators), lambda: sample(logits, params, generators),
                4 * t * d.vocab * 70, 0)  # fmt: skip


def paged_attention_cases(d: Dims, context: int, device: torch.device, chunk: int) -> Iterator[Case]:
    from codeagent.backend.kernels import paged_attention as pa
    from codeagent.backend.layers.attention import paged_attention_ref

    for seqs, new in ((1, 1), (8, 1), (1, chunk)):
        blocks = seqs * -(-context // BLOCK_TOKENS)
        k_pool = _rand(blocks * BLOCK_TOKENS, d.kv_heads, d.head_dim, device=device)
        v_pool = torch.randn_like(k_pool)
        order = torch.randperm(blocks).tolist()
        tables = [order[i::seqs] for i in range(seqs)]
        batch = pa.build_batch(tables, [context - new] * seqs, [new] * seqs, BLOCK_TOKENS, device)
        q = _rand(seqs * new, d.heads, d.head_dim, device=device)
        kind = "decode" if new == 1 else "prefill"
        yield Case(
            f"paged_attention_{kind}", d.name, f"{seqs}x ctx={context} new={new} H={d.heads}/{d.kv_heads} D={d.head_dim}",
            lambda q=q, k=k_pool, v=v_pool, b=batch: pa.attend(q, k, v, b, d.head_dim**-0.5),
            lambda q=q, k=k_pool, v=v_pool, b=batch: paged_attention_ref(q, k, v, b, d.head_dim**-0.5),
            4 * seqs * context * d.kv_heads * d.head_dim + 4 * q.numel(),
            4 * seqs * new * d.heads * context * d.head_dim,
        )  # fmt: skip


def v4_attention_cases(d: Dims, context: int, device: torch.device) -> Iterator[Case]:
    for t in (1, 64) if device.type == "cuda" else (1, 4):
        yield from _v4_attention_at(d, context, t, device)


def _v4_attention_at(d: Dims, context: int, t: int, device: torch.device) -> list[Case]:
    from codeagent.backend.kernels import indexer, sink_attention
    from codeagent.backend.models.deepseek_v4.attention import attend
    from codeagent.backend.models.deepseek_v4.indexer import indexer_scores, top_k_visible, visible_entries

    entries = max(1, context // 4)
    keys = _rand(d.window + entries, d.head_dim, device=device)
    chosen = torch.rand(t, entries, device=device).argsort(dim=1)[:, : d.index_topk] + d.window
    index = torch.cat([torch.arange(d.window, device=device).expand(t, -1), chosen], dim=1).to(torch.int32)
    visible = torch.zeros(t, keys.shape[0], dtype=torch.bool, device=device).scatter_(1, index.long(), True)
    q, sinks = _rand(t, d.heads, d.head_dim, device=device), torch.randn(d.heads, device=device)
    picked, scale = index.shape[1], d.head_dim**-0.5
    moved, flops = 2 * t * picked * d.head_dim + 4 * q.numel(), 4 * t * d.heads * picked * d.head_dim
    iq = _rand(t, d.index_heads, d.index_dim, device=device)
    ikeys, hw = _rand(entries, d.index_dim, device=device), _rand(t, d.index_heads, device=device)
    pos = torch.full((t,), context - 1, device=device, dtype=torch.int32)
    return [
        Case("v4_sink_attention", d.name, f"T={t} ctx={context} entries={picked} H={d.heads} D={d.head_dim}",
             lambda: sink_attention.sink_attention(q, keys, index, sinks, scale),
             lambda: attend(q, keys, visible, sinks, scale), moved, flops),
        Case("v4_sink_attention_from_mask", d.name, f"T={t} ctx={context} L={keys.shape[0]}",
             lambda: sink_attention.masked_sink_attention(q, keys, visible, sinks, scale),
             lambda: attend(q, keys, visible, sinks, scale), moved + t * keys.shape[0], flops),
        Case("v4_indexer_topk", d.name, f"T={t} entries={entries} IH={d.index_heads} k={d.index_topk}",
             lambda: indexer.selection(iq, ikeys, hw, pos, d.index_topk, 4),
             lambda: top_k_visible(indexer_scores(iq, ikeys, hw), visible_entries(pos, entries, 4), d.index_topk),
             2 * entries * d.index_dim + 12 * t * entries, 2 * t * d.index_heads * entries * d.index_dim),
    ]  # fmt: skip


def mhc_case(d: Dims, t: int, device: torch.device) -> Case:
    from codeagent.backend.kernels import mhc
    from codeagent.backend.models.deepseek_v4.mhc import hc_weights, mixing_logits

    n = d.hc
    streams, fn = (
        _rand(t, n, d.hidden, device=device),
        torch.randn((2 + n) * n, n * d.hidden, device=device) * 0.01,
    )
    scale, base = torch.rand(3, device=device), torch.randn((2 + n) * n, device=device)
    return Case("v4_mhc_sinkhorn", d.name, f"T={t} n={n} iters=20",
                lambda: mhc.hc_weights(mixing_logits(streams, fn, 1e-6), scale, base, n, 20, 1e-6),
                lambda: hc_weights(streams, fn, base, scale, 20, 1e-6, 1e-6),
                2 * streams.numel() + 4 * fn.numel(), 2 * t * fn.numel())  # fmt: skip


def cases(models: list[Dims], tokens: tuple[int, ...], contexts: tuple[int, ...], device: torch.device):
    weights_cache: dict = {}
    for d in models:
        for t in tokens:
            yield from pointwise_cases(d, t, device)
            yield from moe_cases(d, t, device, weights_cache)
            yield sampling_case(d, t, device)
            if d.v4:
                yield mhc_case(d, t, device)
        weights_cache.clear()
        for context in contexts:
            if d.v4:
                yield from v4_attention_cases(d, context, device)
            else:
                yield from paged_attention_cases(d, context, device, min(512, context // 2))
