"""DeepSeek-V4 attention: a sliding window plus compressed entries over one shared K=V latent.

Per layer: q = RMSNorm(wq_a x) -> wq_b -> per-head unweighted RMSNorm -> RoPE on the last
r channels; one latent kv = RMSNorm(wkv x) with RoPE serves as both key and value. Every
layer attends to its last ``sliding_window`` latents. Heavily compressed (HCA) layers
also attend to every closed entry of their compressor, compressed sparse (CSA) layers to
the ``index_topk`` entries their Lightning indexer ranks best (``deepseek_v4_compressor``).
Entry i pools tokens [i*rate, (i+1)*rate) and is visible to a query at p iff
i < (p + 1) // rate, so the window that a token closes is already visible to it. A learned
per-head sink logit joins the softmax and carries no value. The output's rotary
channels are rotated back at the query position, then the grouped low-rank projection
maps heads to hidden: ``wo_a`` per group of heads [G, R, H*D/G], then ``wo_b``.
Sliding layers use the ``main`` rope (theta 10000), CSA/HCA the ``compress`` one (YaRN).

Per sequence and layer, ``LayerState`` keeps the latents (row streams: pages of the engine's
pool, or growing tensors standalone) and the compressors' states, so a decode step costs
one token's work plus attention over W + visible entries.

Cached decoding vs the full forward (why transformers' cached decoding drifts): with few
indexer heads, many entries score exactly 0 (every head's ReLU clipped) and
``torch.topk`` chooses among tied scores in an order that depends on the row length.
transformers' full forward scores each query against all ``len // rate`` entries (future
ones masked to -inf) while its cached decode scores against the ``(p + 1) // rate``
entries that exist, so the two pick different tied entries; worse, the full forward's
choice for an early position changes as the sequence grows, so a position's hidden
state, and every entry later pooled from it, depends on how many tokens follow it.
Replacing ``topk`` by an index-stable ranking in the reference makes its full forward
length-independent and its cached decoding agree with it at every position (the tests
show both). DeepSeek's own inference code calls ``topk`` the same way in prefill (masked
rows) and decode (unmasked rows), so it inherits the same ambiguity: neither path is
"right", the choice among tied entries is simply undefined. We break ties by entry index,
which makes prefill, chunked prefill and one-token decoding agree exactly and matches the
reference wherever no tie straddles the top-k cut.

Limits: a prefill chunk of T tokens builds [T, T + W + N] masks (O(T^2) memory; the
engine's chunked prefill bounds T). DeepSeek's inference code also rounds the latent's
non-rotary channels through FP8 and the indexer's queries and keys through a Hadamard
rotation and FP4 (simulating its quantization-aware training); transformers and we do not.

Shapes: T new tokens of one sequence, H heads, D head_dim, L keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from codeagent.backend.cache.paged import GrowingRows, Rows
from codeagent.backend.kernels.dispatch import REFERENCE, Kernels
from codeagent.backend.models.deepseek_v4_compressor import (
    Compressor,
    CompressorState,
    indexer_selection,
    visible_entries,
)
from codeagent.backend.models.deepseek_v4_config import CSA, HCA, DeepseekV4Config
from codeagent.backend.models.deepseek_v4_rope import (
    apply_interleaved_rope,
    rms_norm,
    unweighted_rms_norm,
)

Weights = dict[str, torch.Tensor]


@dataclass(slots=True)
class LayerState:
    latents: Rows = field(default_factory=GrowingRows)  # [S, D] every token's latent, rotated
    compressor: CompressorState = field(default_factory=CompressorState)
    indexer: CompressorState = field(default_factory=CompressorState)


@dataclass(frozen=True, slots=True)
class LayerAttention:
    """What one layer's attention needs besides weights and state."""

    kind: str
    rate: int  # 0 for sliding-window layers
    rope: tuple[torch.Tensor, float]  # inverse frequencies [r/2], cos/sin scale
    main: Compressor | None  # the KV compressor (CSA, HCA)
    indexer: Compressor | None  # the indexer's key compressor (CSA)


def layer_attention(
    c: DeepseekV4Config, i: int, ropes: dict[str, tuple[torch.Tensor, float]]
) -> LayerAttention:
    kind, rate = c.layer_types[i], c.rate(i)
    if kind == HCA:
        return LayerAttention(
            kind, rate, ropes["compress"], Compressor("attn.compressor.", rate, c.head_dim, False), None
        )
    if kind == CSA:
        main = Compressor("attn.compressor.", rate, c.head_dim, True)
        indexer = Compressor("attn.indexer.compressor.", rate, c.index_head_dim, True)
        return LayerAttention(kind, rate, ropes["compress"], main, indexer)
    return LayerAttention(kind, 0, ropes["main"], None, None)


def project(
    x: torch.Tensor,
    w: Weights,
    c: DeepseekV4Config,
    cos: torch.Tensor,
    sin: torch.Tensor,
    kernels: Kernels = REFERENCE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [T, hidden] -> q_residual [T, q_lora], q [T, H, D], kv [T, D], the last two rotated."""
    t, eps, k = x.shape[0], c.rms_norm_eps, kernels
    q_residual = rms_norm(F.linear(x, w["attn.wq_a.weight"]), w["attn.q_norm.weight"], eps, k)
    q = F.linear(q_residual, w["attn.wq_b.weight"]).view(t, c.num_attention_heads, c.head_dim)
    q = apply_interleaved_rope(unweighted_rms_norm(q, eps, k), cos[:, None], sin[:, None], k)
    kv = rms_norm(F.linear(x, w["attn.wkv.weight"]), w["attn.kv_norm.weight"], eps, k)
    return q_residual, q, apply_interleaved_rope(kv, cos, sin, k)


def sequence_attention(
    spec: LayerAttention,
    state: LayerState,
    w: Weights,
    c: DeepseekV4Config,
    x: torch.Tensor,
    q_residual: torch.Tensor,
    q: torch.Tensor,
    kv: torch.Tensor,
    positions: torch.Tensor,
    kernels: Kernels = REFERENCE,
) -> torch.Tensor:
    """One sequence's new tokens (x [T, hidden], q [T, H, D], kv [T, D]); updates state -> [T, H, D]."""
    keys, visible = window_keys(state, kv, positions, c.sliding_window)
    if spec.main is not None:
        spec.main.update(state.compressor, x, w, spec.rope, c.rms_norm_eps, kernels)
    if spec.indexer is not None:
        spec.indexer.update(state.indexer, x, w, spec.rope, c.rms_norm_eps, kernels)
    if state.compressor.count:
        entries = state.compressor.entries.read()
        if spec.kind == CSA:
            chosen = indexer_selection(
                x,
                q_residual,
                positions,
                state.indexer.entries.read(),
                w,
                c.index_n_heads,
                c.index_topk,
                spec.rate,
                spec.rope,
                kernels,
            )
        else:
            chosen = visible_entries(positions, entries.shape[0], spec.rate)
        keys, visible = torch.cat((keys, entries)), torch.cat((visible, chosen), dim=1)
    return attend(q, keys, visible, w["attn.attn_sink"], c.head_dim**-0.5, kernels)


def window_keys(
    state: LayerState, kv: torch.Tensor, positions: torch.Tensor, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The last W-1 latents plus the new ones [L, D], and which each query sees [T, L]; stores the new."""
    kept = len(state.latents)
    keys = kv if kept == 0 else torch.cat((state.latents.read(max(0, kept - (window - 1)), kept), kv))
    last = positions[-1]
    key_pos = torch.arange(keys.shape[0], device=kv.device) + (last + 1 - keys.shape[0])
    visible = (key_pos[None, :] <= positions[:, None]) & (key_pos[None, :] > positions[:, None] - window)
    state.latents.append(kv)
    return keys, visible


def attend(
    q: torch.Tensor,
    keys: torch.Tensor,
    visible: torch.Tensor,
    sinks: torch.Tensor,
    scale: float,
    kernels: Kernels = REFERENCE,
) -> torch.Tensor:
    """q [T, H, D]; keys (= values) [L, D]; visible [T, L]; sinks [H] -> [T, H, D], in float32 inside."""
    if kernels.triton is not None:
        return kernels.triton.masked_sink_attention(q, keys, visible, sinks, scale)
    values = keys.float()
    logits = torch.einsum("thd,ld->htl", q.float(), values) * scale
    logits = logits.masked_fill(~visible[None], float("-inf"))
    sink = sinks.float()[:, None, None].expand(-1, q.shape[0], 1)
    probs = torch.softmax(torch.cat((logits, sink), dim=-1), dim=-1)[..., :-1]  # the sink keeps its share
    return torch.einsum("htl,ld->thd", probs, values).to(q.dtype)


def output_projection(
    out: torch.Tensor,
    w: Weights,
    c: DeepseekV4Config,
    cos: torch.Tensor,
    sin: torch.Tensor,
    kernels: Kernels = REFERENCE,
) -> torch.Tensor:
    """out [T, H, D] -> [T, hidden]: rotate back at the query position, then grouped low-rank."""
    out = apply_interleaved_rope(out, cos[:, None], -sin[:, None], kernels)
    grouped = out.reshape(out.shape[0], c.o_groups, -1)  # [T, G, H*D/G]
    wo_a = w["attn.wo_a.weight"].view(c.o_groups, c.o_lora_rank, -1)  # [G, R, H*D/G]
    low_rank = torch.einsum("tgi,gri->tgr", grouped, wo_a)  # [T, G, R]
    return F.linear(low_rank.flatten(1), w["attn.wo_b.weight"])
