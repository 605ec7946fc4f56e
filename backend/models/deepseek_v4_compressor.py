"""DeepSeek-V4's KV compressors and the Lightning indexer that ranks their entries.

A compressor turns every ``rate`` tokens into one entry: each token projects a value and
a gate (``wkv``, ``wgate`` [C, hidden]), a learned bias per slot (``ape`` [rate, C]) joins
the gate, and the entry is the gate-softmax-weighted sum over the slots, RMS-normed, with
RoPE at the position of the window's first token. Heavily compressed (HCA) layers pool
one window (C = D). Compressed sparse (CSA) layers pool overlapping windows (C = 2D): an
entry takes the second half-channels of its own ``rate`` tokens and the first
half-channels of the previous window's, ``2 * rate`` slots in all (the very first window
has no predecessor; its slots get gate -inf). Like DeepSeek's inference code, the
projections and pooling run in float32 whatever the model dtype.

A CSA layer has a second, narrower compressor (dim ``index_head_dim``) whose entries are
the Lightning indexer's keys: the query at position t scores entry s as
``sum_h w_h(x_t) * ReLU(q_h(t) . K_s)`` (scaled by 1/sqrt(dim) and 1/sqrt(heads)) and
keeps the ``index_topk`` best among the entries already closed at t.

Ties in that ranking are real: the ReLU zeroes every head's term whenever its dot product
is negative, so entries often score exactly 0. ``torch.topk`` picks among tied values in
an order that depends on the row's length, so two correct evaluations of the same
position can choose different entries; see ``deepseek_v4_attention`` for what that does
to transformers. We rank with a stable sort, so ties always go to the lowest entry index
and a position's choice never depends on what else is in the batch or what follows it.

Per sequence, ``CompressorState`` keeps the open window's projections (at most
``rate - 1`` tokens), the previous window's first half-channels (CSA) and all entries so
far, so decoding a token costs one projection and, every ``rate`` tokens, one pooling.

Shapes: T new tokens, C projection width, d = out_dim, N entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from codeagent.backend.cache.paged import GrowingRows, Rows
from codeagent.backend.kernels.dispatch import REFERENCE, Kernels
from codeagent.backend.models.deepseek_v4_rope import apply_interleaved_rope, rms_norm, rope_cos_sin

Weights = dict[str, torch.Tensor]


@dataclass(slots=True)
class CompressorState:
    entries: Rows = field(default_factory=GrowingRows)  # [N, d] normed, rotated, model dtype
    pending_kv: torch.Tensor | None = None  # [n < rate, C] float32, tokens of the open window
    pending_gate: torch.Tensor | None = None  # [n, C] float32, slot bias already added
    overlap_kv: torch.Tensor | None = None  # [rate, d] float32, last closed window's first half (CSA)
    overlap_gate: torch.Tensor | None = None  # [rate, d]
    # paged: the overlap at each block's end, one row [2, rate, d] per block, so a sequence can
    # resume at any block boundary of a cached prefix (None without an engine)
    block_overlaps: Rows | None = None
    block_size: int = 0

    @property
    def count(self) -> int:
        return len(self.entries)

    def resume(self, tokens: int) -> None:
        """Continue after ``tokens`` (a block boundary) restored from the pool: reload the overlap."""
        if tokens and self.block_overlaps is not None:
            saved = self.block_overlaps.get(tokens // self.block_size - 1)
            self.overlap_kv, self.overlap_gate = saved[0], saved[1]


@dataclass(frozen=True, slots=True)
class Compressor:
    prefix: str  # key prefix of wkv, wgate, ape, norm within the layer
    rate: int
    out_dim: int
    overlap: bool  # CSA: 2 * rate slots across two windows; HCA: one window

    def update(
        self,
        state: CompressorState,
        x: torch.Tensor,
        w: Weights,
        rope: tuple[torch.Tensor, float],
        eps: float,
        kernels: Kernels = REFERENCE,
    ) -> None:
        """Feed the new tokens x [T, hidden] of one sequence; close every window they complete."""
        kv = F.linear(x.float(), w[self.prefix + "wkv.weight"])  # [T, C]
        gate = F.linear(x.float(), w[self.prefix + "wgate.weight"])
        done = 0 if state.pending_kv is None else state.pending_kv.shape[0]
        slots = torch.arange(done, done + x.shape[0], device=x.device) % self.rate
        gate = gate + w[self.prefix + "ape"][slots]
        if state.pending_kv is not None:
            kv, gate = torch.cat((state.pending_kv, kv)), torch.cat((state.pending_gate, gate))
        closed = kv.shape[0] // self.rate
        cut = closed * self.rate
        state.pending_kv, state.pending_gate = kv[cut:], gate[cut:]
        if closed == 0:
            return
        kv = kv[:cut].view(closed, self.rate, -1)  # [n, rate, C]
        gate = gate[:cut].view(closed, self.rate, -1)
        if self.overlap:
            self._save_block_overlaps(state, kv, gate)
            kv, gate = self._with_previous_window(state, kv, gate)  # [n, 2 * rate, d]
        pooled = pool_windows(kv, gate, kernels).to(x.dtype)  # [n, d]
        entries = rms_norm(pooled, w[self.prefix + "norm.weight"], eps, kernels)
        first = torch.arange(state.count, state.count + closed, device=x.device) * self.rate
        cos, sin = rope_cos_sin(first, *rope)
        state.entries.append(apply_interleaved_rope(entries, cos, sin, kernels))

    def _save_block_overlaps(self, state: CompressorState, kv: torch.Tensor, gate: torch.Tensor) -> None:
        """For each closed window that ends a block, keep its first half-channels with the block."""
        if state.block_overlaps is None:
            return
        d, per_block = self.out_dim, state.block_size // self.rate
        for j in range(kv.shape[0]):
            closed = state.count + j + 1  # windows closed once this one is
            if closed % per_block == 0:
                state.block_overlaps.put(closed // per_block - 1, torch.stack((kv[j, :, :d], gate[j, :, :d])))

    def _with_previous_window(
        self, state: CompressorState, kv: torch.Tensor, gate: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """kv, gate [n, rate, 2d] -> [n, 2 * rate, d]: previous window's first half, then own second half."""
        d = self.out_dim
        prev_kv = kv.new_zeros(kv.shape[0], self.rate, d)
        prev_gate = gate.new_full((kv.shape[0], self.rate, d), float("-inf"))
        prev_kv[1:], prev_gate[1:] = kv[:-1, :, :d], gate[:-1, :, :d]
        if state.overlap_kv is not None:
            prev_kv[0], prev_gate[0] = state.overlap_kv, state.overlap_gate
        state.overlap_kv, state.overlap_gate = kv[-1, :, :d], gate[-1, :, :d]
        return torch.cat((prev_kv, kv[..., d:]), dim=1), torch.cat((prev_gate, gate[..., d:]), dim=1)


def pool_windows(kv: torch.Tensor, gate: torch.Tensor, kernels: Kernels = REFERENCE) -> torch.Tensor:
    """kv, gate [n, slots, d] float32 -> [n, d]: the gate-softmax-weighted sum over slots."""
    if kernels.triton is not None:
        return kernels.triton.pool_windows(kv, gate)
    return (kv * gate.softmax(dim=1)).sum(dim=1)


def visible_entries(positions: torch.Tensor, count: int, rate: int) -> torch.Tensor:
    """[T, N] True where entry i is closed for the query at position p: i < (p + 1) // rate."""
    return torch.arange(count, device=positions.device)[None, :] < ((positions + 1) // rate)[:, None]


def indexer_scores(q: torch.Tensor, keys: torch.Tensor, head_weights: torch.Tensor) -> torch.Tensor:
    """q [T, IH, ID], keys [N, ID], head_weights [T, IH] -> [T, N] float32."""
    scores = F.relu(torch.einsum("thd,nd->thn", q.float(), keys.float())) * q.shape[-1] ** -0.5
    return (scores * head_weights.float()[:, :, None] * q.shape[1] ** -0.5).sum(dim=1)


def top_k_visible(score: torch.Tensor, visible: torch.Tensor, k: int) -> torch.Tensor:
    """[T, N] True for the k best visible entries per row; ties go to the lowest index."""
    score = score.masked_fill(~visible, float("-inf"))
    order = torch.sort(score, dim=-1, descending=True, stable=True).indices[:, :k]
    chosen = torch.zeros_like(visible)
    chosen.scatter_(1, order, True)
    return chosen & visible


def indexer_selection(
    x: torch.Tensor,
    q_residual: torch.Tensor,
    positions: torch.Tensor,
    keys: torch.Tensor,
    w: Weights,
    heads: int,
    topk: int,
    rate: int,
    rope: tuple[torch.Tensor, float],
    kernels: Kernels = REFERENCE,
) -> torch.Tensor:
    """x [T, hidden], q_residual [T, q_lora], keys [N, ID] -> [T, N] bool: entries the query attends."""
    q = F.linear(q_residual, w["attn.indexer.wq_b.weight"]).view(x.shape[0], heads, -1)  # [T, IH, ID]
    cos, sin = rope_cos_sin(positions, *rope)
    q = apply_interleaved_rope(q, cos[:, None], sin[:, None], kernels)
    head_weights = F.linear(x, w["attn.indexer.weights_proj.weight"])  # [T, IH]
    if kernels.triton is not None:
        return kernels.triton.indexer_selection(q, keys, head_weights, positions, topk, rate)
    score = indexer_scores(q, keys, head_weights)
    return top_k_visible(score, visible_entries(positions, keys.shape[0], rate), topk)
