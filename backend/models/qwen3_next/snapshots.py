"""Prefix caching across Gated DeltaNet states: each layer's conv and recurrent state saved at
every block boundary, in the engine's pool, so a sequence can resume from cached blocks.

A DeltaNet layer's state after token ``t`` is a summary of every token up to ``t``; no KV row
holds it. So each DeltaNet layer ``i`` declares two pool streams with one row per block
(``tokens_per_row == block_size``, as DeepSeek-V4's compressor overlaps): ``{i}.conv`` (the
conv state [C, K - 1] in the model dtype) and ``{i}.state`` (the recurrent state [Hv, Dk, Dv]
in float32), holding the state *after the block's last token*. They travel with the block's
KV rows as one unit: shared by hash in memory, exported to and imported from the disk tier by
the same background writer, so the allocator needs nothing of its own: every registered
block has its state row, hence any cached prefix it reports (always whole blocks) can resume.

Written whenever a forward crosses a block boundary: a prompt or chunk is cut at every
boundary inside it (``cuts``), the rule runs piece by piece and the state after each
boundary's piece is stored; the conv state at a boundary is copied from the convolution's
window (exact: it is the boundary's last K - 1 inputs); a decode token that ends a block
stores the states after its step. A boundary a sequence starts at (its cached prefix) is
never rewritten, so a shared block is only read. ``resume`` reads the row of the block
before ``cached_tokens`` back into a fresh ``DeltaState``.

Exactness: resuming continues from the very float32 state a cold run had at that boundary,
and a cold run in the engine cuts its prompt at the same boundaries, so the resumed pieces
are the cold run's own pieces; the rest (attention over cached KV) is as for any family.
Standalone states (no pool) are not cut.

Cost and limits: every block of the pool carries its state rows, whether or not a sequence
ever resumes there: per block, over the DeltaNet layers, C·(K-1)·dtype + Hv·Dk·Dv·4 bytes
(``state_bytes``). At Qwen3-Next-80B's shapes (36 DeltaNet layers, C = 8192, K = 4,
Hv = 32, Dk = Dv = 128, bf16) that is 36 × (2 MiB + 48 KiB) = 77.3 MB (73.7 MiB) a block,
against 0.79 MB of KV for its 12 attention layers at 32-token blocks: the pool holds ~99x
fewer blocks than the KV alone would allow (larger blocks, ``--block-size``, spread it over more
tokens). A separate state pool holding only every Nth boundary (and each sequence's last)
would cut that; it is not built. Cutting a prompt at every block costs one call of the
chunked rule per block (padded to its chunk of 64 tokens); ``prefix_states=False`` on the
model turns all of this off (no state streams, no resumption).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from codeagent.backend.cache.paged import KVStream, Rows


@dataclass(slots=True)
class Snapshots:
    """One sequence's saved states for one DeltaNet layer: a conv row and a recurrent row per block."""

    conv: Rows  # [C, K - 1] per block, model dtype
    recurrent: Rows  # [Hv, Dk, Dv] per block, float32
    block_size: int

    def cuts(self, start: int, count: int) -> list[int]:
        """Offsets j in 1..count where ``start + j`` ends a block: after them a state is saved."""
        bs = self.block_size
        first = (start // bs + 1) * bs - start
        return list(range(first, count + 1, bs))

    def save(self, tokens: int, conv: torch.Tensor | None, recurrent: torch.Tensor | None) -> None:
        """The states after ``tokens`` tokens (a multiple of the block size) into that block's rows."""
        index = tokens // self.block_size - 1
        if conv is not None:
            self.conv.put(index, conv)
        if recurrent is not None:
            self.recurrent.put(index, recurrent)

    def load(self, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The saved (conv, recurrent) states after ``tokens`` tokens, as new tensors."""
        if tokens % self.block_size:
            raise ValueError(f"{tokens} cached tokens is not a block boundary ({self.block_size} tokens)")
        index = tokens // self.block_size - 1
        return self.conv.get(index).clone(), self.recurrent.get(index).clone()


def state_streams(
    layers: list[int],
    channels: int,
    taps: int,
    heads: int,
    k_dim: int,
    v_dim: int,
    dtype: torch.dtype,
    block_size: int,
) -> list[KVStream]:
    """The pool streams of the DeltaNet ``layers``' saved states: one row of each per block."""
    out = []
    for i in layers:
        out.append(KVStream(f"{i}.conv", block_size, (channels, taps - 1), dtype))
        out.append(KVStream(f"{i}.state", block_size, (heads, k_dim, v_dim), torch.float32))
    return out


def state_bytes(streams: list[KVStream]) -> int:
    """Bytes one block boundary's saved states take (the state streams' rows of one block)."""
    return sum(s.row_bytes() for s in streams if s.name.endswith((".conv", ".state")))
