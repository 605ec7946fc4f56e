"""DeepSeek-V4 attention: a sliding window plus compressed entries over one shared K=V latent.

Per layer: q = RMSNorm(wq_a x) -> wq_b -> per-head unweighted RMSNorm -> RoPE on the last
r channels; one latent kv = RMSNorm(wkv x) with RoPE serves as both key and value. Every
layer attends to its last ``sliding_window`` latents. Heavily compressed (HCA) layers
also attend to every closed entry of their compressor, compressed sparse (CSA) layers to
the ``index_topk`` entries their Lightning indexer ranks best (``compressor.py``,
``indexer.py``).
Entry i pools tokens [i*rate, (i+1)*rate) and is visible to a query at p iff
i < (p + 1) // rate, so the window that a token closes is already visible to it. A learned
per-head sink logit joins the softmax and carries no value. The output's rotary
channels are rotated back at the query position, then the grouped low-rank projection
maps heads to hidden: ``wo_a`` per group of heads [G, R, H*D/G], then ``wo_b``.
Sliding layers use the ``main`` rope (theta 10000), CSA/HCA the ``compress`` one (YaRN).

Per sequence and layer, ``LayerState`` keeps the latents (row streams: pages of the engine's
pool, or growing tensors standalone) and the compressors' states, so a decode step costs
one token's work plus attention over W + visible entries. Everything computed per token
(projections, norms, rotations, the compressors' and the indexer's projections, the output
projection) runs once over the whole batch; only what reads or grows a sequence's own state
(its window of latents, its compressors' windows and entries, the indexer's choice among
its entries, and attention over those keys) loops over the sequences.

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

Split across ranks, a rank holds H/tp query heads (their ``wq_b`` rows and sinks) and the
output groups they feed (``wo_a`` rows, ``wo_b`` columns); ``wq_a``, the latent, the
compressors and the indexer's keys are replicated, so every rank keeps the same state. A
layer all-reduces twice: the partial output of ``wo_b``, and on CSA layers the indexer's
partial scores of every sequence of the step at once, in one call, before the top-k.

Its matrices may be kept packed (``packed_weights.PackedWeight``, the opt-in ``backend/packing.py``):
the projections then run ``packed_linear``, and ``wo_a`` one ``packed_linear`` per output
group (``layers.linear.grouped_linear``; decoded whole for the call only where a group would cut
its 128-row scale blocks, as in tiny test models).

Limits: a prefill chunk of T tokens builds [T, T + W + N] masks (O(T^2) memory; the
engine's chunked prefill bounds T). DeepSeek's inference code also rounds the latent's
non-rotary channels through FP8 and the indexer's queries and keys through a Hadamard
rotation and FP4 (simulating its quantization-aware training); transformers and we do not.

Shapes: T new tokens (t of one sequence), H heads, D head_dim, L keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from codeagent.backend.cache.paged import GrowingRows, Rows
from codeagent.backend.distributed.group import Group
from codeagent.backend.kernels.dispatch import REFERENCE, Kernels
from codeagent.backend.layers.linear import grouped_linear, plain_or_packed
from codeagent.backend.models.deepseek_v4.compressor import Compressor, CompressorState, Rope
from codeagent.backend.models.deepseek_v4.config import CSA, SLIDING, DeepseekV4Config
from codeagent.backend.models.deepseek_v4.indexer import Indexer, visible_entries
from codeagent.backend.models.deepseek_v4.norm import rms_norm, unweighted_rms_norm
from codeagent.backend.models.deepseek_v4.rope import apply_interleaved_rope
from codeagent.backend.models.deepseek_v4.weights import Weights, scope

Keys = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]  # keys, visible, partial indexer scores


@dataclass(slots=True)
class LayerState:
    latents: Rows = field(default_factory=GrowingRows)  # [S, D] every token's latent, rotated
    compressor: CompressorState = field(default_factory=CompressorState)
    indexer: CompressorState = field(default_factory=CompressorState)


class Attention(nn.Module):
    """One layer's attention; its weights are the layer's ``attn.*``."""

    def __init__(
        self, c: DeepseekV4Config, layer: int, ropes: dict[str, Rope], dtype: torch.dtype, group: Group
    ) -> None:
        super().__init__()
        self.kind, self.rate = c.layer_types[layer], c.rate(layer)  # rate 0: sliding window only
        self.rope_kind = "main" if self.kind == SLIDING else "compress"
        self.group, tp = group, group.layout.tp
        self.heads, self.head_dim, self.window = c.num_attention_heads // tp, c.head_dim, c.sliding_window
        self.groups, self.rank, self.eps = c.o_groups // tp, c.o_lora_rank, c.rms_norm_eps  # this rank's
        rope = ropes[self.rope_kind]
        self.compressor: Compressor | None = None  # CSA and HCA layers' KV entries
        self.indexer: Indexer | None = None  # CSA layers'
        if self.kind != SLIDING:
            self.compressor = Compressor(self.rate, c.head_dim, self.kind == CSA, rope, self.eps, dtype)
        if self.kind == CSA:
            self.indexer = Indexer(c, self.rate, rope, dtype, tp)

    def bind(self, w: Weights) -> None:
        self.wq_a, self.q_norm, self.wq_b = w["wq_a.weight"], w["q_norm.weight"], w["wq_b.weight"]
        self.wkv, self.kv_norm, self.sinks = w["wkv.weight"], w["kv_norm.weight"], w["attn_sink"]
        self.wo_a = w["wo_a.weight"]  # [G*R, H*D/G], plain or packed
        self.wo_b = w["wo_b.weight"]  # [hidden, G*R]
        if self.compressor is not None:
            self.compressor.bind(scope(w, "compressor."))
        if self.indexer is not None:
            self.indexer.bind(scope(w, "indexer."))

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        states: list[LayerState],
        sizes: list[int],
        kernels: Kernels,
    ) -> torch.Tensor:
        """x [T, hidden], positions [T], cos/sin [T, r] of this layer's rope -> [T, hidden]."""
        q_residual, q, kv = self._project(x, cos, sin, kernels)
        none: list[tuple[torch.Tensor, ...] | None] = [None] * len(sizes)
        main = (
            _per_sequence(self.compressor.project(x, kernels), sizes) if self.compressor is not None else none
        )
        index = none
        if self.indexer is not None:
            queries = self.indexer.project(x, q_residual, cos, sin, kernels)  # q, head weights
            index = _per_sequence((*queries, *self.indexer.compressor.project(x, kernels)), sizes)
        pieces = zip(states, kv.split(sizes), positions.split(sizes), main, index, strict=True)
        keys = [self._keys(*piece, kernels) for piece in pieces]
        if self.indexer is not None and self.group.size > 1:
            keys = self._choose_across_ranks(keys, positions.split(sizes))
        scale, pairs = self.head_dim**-0.5, zip(q.split(sizes), keys, strict=True)
        out = [attend(q_s, k, seen, self.sinks, scale, kernels) for q_s, (k, seen, _) in pairs]  # [t, H, D]
        return self.group.all_reduce(self._output(torch.cat(out), cos, sin, kernels))  # partial sums

    def _project(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, kernels: Kernels
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [T, hidden] -> q_residual [T, q_lora], q [T, H, D], kv [T, D], the last two rotated."""
        t, k = x.shape[0], kernels
        q_residual = rms_norm(plain_or_packed(x, self.wq_a, k), self.q_norm, self.eps, k)
        q = plain_or_packed(q_residual, self.wq_b, k).view(t, self.heads, self.head_dim)
        q = apply_interleaved_rope(unweighted_rms_norm(q, self.eps, k), cos[:, None], sin[:, None], k)
        kv = rms_norm(plain_or_packed(x, self.wkv, k), self.kv_norm, self.eps, k)
        return q_residual, q, apply_interleaved_rope(kv, cos, sin, k)

    def _keys(
        self,
        state: LayerState,
        kv: torch.Tensor,
        positions: torch.Tensor,
        main: tuple[torch.Tensor, ...] | None,
        index: tuple[torch.Tensor, ...] | None,
        kernels: Kernels,
    ) -> Keys:
        """One sequence's new tokens: kv [t, D], positions [t], its share of the compressor's
        projections (kv, gate [t, C]) and of the indexer's (q [t, IH, ID], head weights [t, IH],
        kv, gate [t, C']); updates its state -> its keys [L, D], which each query sees [t, L]
        and, split across ranks on a CSA layer, this rank's share of the indexer's scores of
        the entries (whose choice ``_choose_across_ranks`` appends to the second)."""
        keys, visible = window_keys(state, kv, positions, self.window)
        if self.compressor is not None and main is not None:
            self.compressor.update(state.compressor, *main, kernels)
        if self.indexer is not None and index is not None:
            self.indexer.compressor.update(state.indexer, *index[2:], kernels)
        if not state.compressor.count:
            return keys, visible, None
        entries = state.compressor.entries.read()
        keys = torch.cat((keys, entries))
        if self.indexer is None or index is None:
            every = visible_entries(positions, entries.shape[0], self.rate)
            return keys, torch.cat((visible, every), dim=1), None
        index_keys = state.indexer.entries.read()
        if self.group.size > 1:
            return keys, visible, self.indexer.partial_scores(index[0], index[1], index_keys, kernels)
        chosen = self.indexer.select(index[0], index[1], positions, index_keys, kernels)
        return keys, torch.cat((visible, chosen), dim=1), None

    def _choose_across_ranks(self, keys: list[Keys], positions: list[torch.Tensor]) -> list[Keys]:
        """Sum every sequence's partial indexer scores over the ranks (one all-reduce), then let
        each choose its top-k entries. The states are replicated, so every rank has the same
        sequences with scores and takes part in the same collective."""
        partial = [score for _, _, score in keys if score is not None]
        if not partial or self.indexer is None:
            return keys
        summed = self.group.all_reduce(torch.cat([score.flatten() for score in partial]))
        out, offset = [], 0
        for (k, visible, score), pos in zip(keys, positions, strict=True):
            if score is not None:
                whole = summed[offset : offset + score.numel()].view_as(score)
                offset += score.numel()
                visible = torch.cat((visible, self.indexer.choose(whole, pos)), dim=1)
            out.append((k, visible, None))
        return out

    def _output(
        self, out: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, kernels: Kernels
    ) -> torch.Tensor:
        """out [T, H, D] -> [T, hidden]: rotate back at the query position, then grouped low-rank."""
        out = apply_interleaved_rope(out, cos[:, None], -sin[:, None], kernels)
        grouped = out.reshape(out.shape[0], self.groups, -1)  # [T, G, H*D/G]
        low_rank = grouped_linear(grouped, self.wo_a, kernels)  # [T, G, R]
        return plain_or_packed(low_rank.flatten(1), self.wo_b, kernels)


def _per_sequence(tensors: tuple[torch.Tensor, ...], sizes: list[int]) -> list[tuple[torch.Tensor, ...]]:
    """[T, ...] tensors -> per sequence, its rows of each."""
    return list(zip(*(t.split(sizes) for t in tensors), strict=True))


def window_keys(
    state: LayerState, kv: torch.Tensor, positions: torch.Tensor, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The last W-1 latents plus the new ones [L, D], and which each query sees [t, L]; stores the new."""
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
    if kernels.v4 is not None and kernels.v4.fits_attention(q, keys):
        return kernels.v4.sink_attention(q, keys, visible, sinks, scale)
    values = keys.float()
    logits = torch.einsum("thd,ld->htl", q.float(), values) * scale
    logits = logits.masked_fill(~visible[None], float("-inf"))
    sink = sinks.float()[:, None, None].expand(-1, q.shape[0], 1)
    probs = torch.softmax(torch.cat((logits, sink), dim=-1), dim=-1)[..., :-1]  # the sink keeps its share
    return torch.einsum("htl,ld->thd", probs, values).to(q.dtype)
