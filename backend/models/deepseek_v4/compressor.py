"""DeepSeek-V4's KV compressors: every ``rate`` tokens of a sequence pooled into one entry.

Each token projects a value and a gate (``wkv``, ``wgate`` [C, hidden]), a learned bias
per slot (``ape`` [rate, C]) joins the gate, and the entry is the gate-softmax-weighted sum
over the slots, RMS-normed, with RoPE at the position of the window's first token. Heavily
compressed (HCA) layers pool one window (C = D). Compressed sparse (CSA) layers pool
overlapping windows (C = 2D): an entry takes the second half-channels of its own ``rate``
tokens and the first half-channels of the previous window's, ``2 * rate`` slots in all
(the very first window has no predecessor; its slots get gate -inf). Like DeepSeek's
inference code, the projections and pooling run in float32 whatever the model dtype. A
CSA layer's indexer has a second, narrower compressor of the same kind (``indexer.py``).

The projections are per token, so ``project`` runs once over every sequence's new tokens;
``update`` is per sequence: ``CompressorState`` keeps the open window's projections (at
most ``rate - 1`` tokens), the previous window's first half-channels (CSA) and all entries
so far, so decoding a token costs one projection and, every ``rate`` tokens, one pooling.
In the engine's pool the overlap at each block's end is kept with the block, so a sequence
can resume at any block boundary of a cached prefix.

Shapes: T new tokens, C projection width, d = out_dim, N entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from codeagent.backend.cache.paged import GrowingRows, Rows
from codeagent.backend.kernels.dispatch import REFERENCE, Kernels
from codeagent.backend.layers.linear import linear
from codeagent.backend.models.deepseek_v4.norm import rms_norm
from codeagent.backend.models.deepseek_v4.rope import apply_interleaved_rope, rope_cos_sin
from codeagent.backend.models.deepseek_v4.weights import Weights

Rope = tuple[torch.Tensor, float]  # inverse frequencies [r/2], cos/sin scale


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


class Compressor(nn.Module):
    """One compressor; its weights are ``wkv.weight``, ``wgate.weight``, ``ape``, ``norm.weight``."""

    def __init__(self, rate: int, out_dim: int, overlap: bool, rope: Rope, eps: float, dtype: torch.dtype):
        super().__init__()
        self.rate, self.out_dim, self.overlap = rate, out_dim, overlap  # overlap: CSA's 2 * rate slots
        self.rope, self.eps, self.dtype = rope, eps, dtype

    def bind(self, w: Weights) -> None:
        self.wkv, self.wgate = w["wkv.weight"], w["wgate.weight"]  # [C, hidden] float32
        self.ape, self.norm = w["ape"], w["norm.weight"]  # [rate, C], [d]

    def project(self, x: torch.Tensor, kernels: Kernels = REFERENCE) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T, hidden] (any sequences) -> kv, gate [T, C] float32 (decode rows: the native kernel)."""
        x = x.float()
        return linear(x, self.wkv, kernels), linear(x, self.wgate, kernels)

    def update(
        self, state: CompressorState, kv: torch.Tensor, gate: torch.Tensor, kernels: Kernels = REFERENCE
    ) -> None:
        """Feed one sequence's new tokens (kv, gate [t, C] from ``project``); close every window they complete."""
        done = 0 if state.pending_kv is None else state.pending_kv.shape[0]
        slots = torch.arange(done, done + kv.shape[0], device=kv.device) % self.rate
        gate = gate + self.ape[slots]
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
        pooled = pool_windows(kv, gate, kernels).to(self.dtype)  # [n, d]
        entries = rms_norm(pooled, self.norm, self.eps, kernels)
        first = torch.arange(state.count, state.count + closed, device=kv.device) * self.rate
        cos, sin = rope_cos_sin(first, *self.rope)
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
