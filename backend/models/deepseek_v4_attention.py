"""DeepSeek-V4 attention: sliding window plus compressed entries, one shared K=V latent.

Every layer attends to its last ``sliding_window`` latent rows. Compressed layers also see
entries that pool ``rate`` tokens each (a gated softmax over slots, plus a learned bias per
slot): heavily compressed (HCA) layers attend to every entry already closed; compressed
sparse (CSA) layers pool overlapping windows (the previous window's first half-channels
and the current window's second half) and attend only to the top-k entries a Lightning
indexer scores highest, from its own, narrower compressor. An entry closing at token t
is visible to queries at positions >= t, i.e. entry i to queries p with i < (p + 1) // rate,
exactly as in the model's full forward. A learned per-head sink logit joins the softmax.

Per sequence and layer, ``LayerState`` keeps what decoding needs: the last W-1 latent rows,
the tokens of the window not yet pooled (with their gates), the previous window's
half-channels (CSA), and the entries so far, for the attention and for the indexer.
A new token costs one step: nothing is recomputed from the prompt.

Shapes: T new tokens of one sequence, H heads, D = head_dim, r rotary dims, N entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

Weights = dict[str, torch.Tensor]


def v4_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return (weight.float() * h).to(x.dtype)


def unweighted_rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.float().square().mean(-1, keepdim=True) + eps).to(x.dtype)


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, scale: float, dtype: torch.dtype):
    """positions [T] -> cos, sin [T, r] (pairs repeated), in ``dtype`` like the reference."""
    freqs = positions.float()[:, None] * inv_freq.to(positions.device)[None, :]
    cos = (freqs.cos() * scale).to(dtype).repeat_interleave(2, dim=-1)
    sin = (freqs.sin() * scale).to(dtype).repeat_interleave(2, dim=-1)
    return cos, sin


def apply_interleaved_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the last r channels of x [..., D] pairwise; cos, sin broadcast to [..., r]."""
    r = cos.shape[-1]
    nope, rope = x[..., :-r], x[..., -r:]
    pairs = rope.float().unflatten(-1, (-1, 2))
    rotated_half = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    rotated = (rope.float() * cos + rotated_half * sin).to(x.dtype)
    return torch.cat((nope, rotated), dim=-1)


@dataclass(slots=True)
class CompressorState:
    pending_kv: torch.Tensor | None = None  # [n < rate, C] tokens of the open window
    pending_gate: torch.Tensor | None = None  # [n, C], slot bias already added
    overlap_kv: torch.Tensor | None = None  # [rate, C/2] previous window's first half-channels (CSA)
    overlap_gate: torch.Tensor | None = None
    entries: torch.Tensor | None = None  # [N, out_dim] pooled, normed, rotated entries
    windows: int = 0  # windows closed so far


@dataclass(slots=True)
class LayerState:
    window: torch.Tensor | None = None  # [<= W-1, D] last latent rows
    compressor: CompressorState = field(default_factory=CompressorState)
    indexer: CompressorState = field(default_factory=CompressorState)


@dataclass(frozen=True, slots=True)
class Compressor:
    """Weights and shape of one compressor: wkv, wgate [C, hidden], ape [rate, C], norm [out]."""

    prefix: str
    rate: int
    out_dim: int
    overlap: bool  # CSA pools 2*rate slots across two windows; HCA pools one window

    def update(self, state: CompressorState, x: torch.Tensor, w: Weights, rope: tuple, eps: float) -> None:
        """Feed the new tokens x [T, hidden]; close every window they complete."""
        kv = F.linear(x, w[self.prefix + "wkv.weight"])  # [T, C]
        gate = F.linear(x, w[self.prefix + "wgate.weight"])
        start = 0 if state.pending_kv is None else state.pending_kv.shape[0]
        slots = torch.arange(start, start + x.shape[0], device=x.device) % self.rate
        gate = gate + w[self.prefix + "ape"][slots].to(gate.dtype)
        if state.pending_kv is not None:
            kv, gate = torch.cat((state.pending_kv, kv)), torch.cat((state.pending_gate, gate))
        closed = kv.shape[0] // self.rate
        new = [
            self._close(
                state, kv[i * self.rate : (i + 1) * self.rate], gate[i * self.rate : (i + 1) * self.rate]
            )
            for i in range(closed)
        ]
        state.pending_kv, state.pending_gate = kv[closed * self.rate :], gate[closed * self.rate :]
        if new:
            pooled = v4_rms_norm(torch.stack(new), w[self.prefix + "norm.weight"], eps)  # [n, out]
            positions = torch.arange(state.windows, state.windows + closed, device=x.device) * self.rate
            inv_freq, scale = rope
            cos, sin = rope_cos_sin(positions, inv_freq, scale, pooled.dtype)
            pooled = apply_interleaved_rope(pooled, cos, sin)
            state.entries = pooled if state.entries is None else torch.cat((state.entries, pooled))
            state.windows += closed

    def _close(self, state: CompressorState, kv: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Pool one complete window kv, gate [rate, C] into one entry [out]."""
        if self.overlap:
            d = self.out_dim
            prev_kv = state.overlap_kv if state.overlap_kv is not None else kv.new_zeros(self.rate, d)
            prev_gate = (
                state.overlap_gate
                if state.overlap_gate is not None
                else gate.new_full((self.rate, d), float("-inf"))
            )
            state.overlap_kv, state.overlap_gate = kv[:, :d], gate[:, :d]
            kv, gate = torch.cat((prev_kv, kv[:, d:])), torch.cat((prev_gate, gate[:, d:]))  # [2*rate, d]
        weights = gate.softmax(dim=0, dtype=torch.float32).to(kv.dtype)
        return (kv * weights).sum(dim=0)


def visible_entries(positions: torch.Tensor, count: int, rate: int) -> torch.Tensor:
    """[T, N] True where entry i is closed for the query at that position: i < (p + 1) // rate."""
    return torch.arange(count, device=positions.device)[None, :] < ((positions + 1) // rate)[:, None]


def indexer_selection(
    x: torch.Tensor,
    q_residual: torch.Tensor,
    positions: torch.Tensor,
    entries: torch.Tensor | None,
    w: Weights,
    prefix: str,
    heads: int,
    dim: int,
    topk: int,
    rate: int,
    rope: tuple,
) -> torch.Tensor:
    """[T, N] True for the top-k visible entries by the indexer's score, per query."""
    if entries is None:
        return torch.zeros(x.shape[0], 0, dtype=torch.bool, device=x.device)
    q = F.linear(q_residual, w[prefix + "wq_b.weight"]).view(x.shape[0], heads, dim)  # [T, IH, ID]
    inv_freq, scale = rope
    cos, sin = rope_cos_sin(positions, inv_freq, scale, x.dtype)
    q = apply_interleaved_rope(q, cos[:, None], sin[:, None])
    scores = F.relu(torch.einsum("thd,nd->thn", q.float(), entries.float())) * dim**-0.5
    head_weights = F.linear(x, w[prefix + "weights_proj.weight"]).float() * heads**-0.5  # [T, IH]
    score = (scores * head_weights[:, :, None]).sum(dim=1)  # [T, N]
    visible = visible_entries(positions, entries.shape[0], rate)
    score = score.masked_fill(~visible, float("-inf"))
    k = min(topk, entries.shape[0])
    # A stable sort breaks ties by entry index. Ties are common: the ReLU makes a score exactly 0
    # whenever every indexer head's dot product is negative, and torch.topk breaks such ties
    # differently for rows of different lengths, which made prefill and decode disagree.
    order = torch.sort(score, dim=-1, descending=True, stable=True).indices[:, :k]
    chosen = torch.zeros_like(visible)
    chosen.scatter_(1, order, True)
    return chosen & visible


def attend(
    q: torch.Tensor, keys: torch.Tensor, visible: torch.Tensor, sinks: torch.Tensor, scale: float
) -> torch.Tensor:
    """q [T, H, D]; keys (= values) [L, D]; visible [T, L]; sinks [H] -> [T, H, D]."""
    logits = torch.einsum("thd,ld->htl", q, keys) * scale
    logits = logits.masked_fill(~visible[None], float("-inf"))
    sink = sinks.to(logits.dtype)[:, None, None].expand(-1, q.shape[0], 1)
    combined = torch.cat((logits, sink), dim=-1)
    combined = combined - combined.max(dim=-1, keepdim=True).values
    probs = torch.softmax(combined, dim=-1, dtype=combined.dtype)[..., :-1].to(keys.dtype)
    return torch.einsum("htl,ld->thd", probs, keys)
