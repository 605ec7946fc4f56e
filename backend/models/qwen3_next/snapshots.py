"""Prefix caching across Gated DeltaNet states: each layer's conv and recurrent state saved at
block boundaries in the engine's pool, so a sequence can resume from cached blocks.

A DeltaNet layer's state after token ``t`` is a summary of every token up to ``t``; no KV row
holds it. So each DeltaNet layer ``i`` declares two pool streams with one row per block
(``tokens_per_row == block_size``, as DeepSeek-V4's compressor overlaps): ``{i}.conv`` (the
conv state [C, K - 1] in the model dtype) and ``{i}.state`` (the recurrent state [Hv, Dk, Dv]
in float32), holding the state *after the block's last token*. They are too large for every
block, so they are declared ``every = state_every`` (``KVStream.every``, default 16): only one
pool block in ``every`` has these rows, and the allocator gives a sequence such a block at
its block indices k with k + 1 a multiple of ``every`` (when one is free; otherwise that
boundary is simply not saved). The rows travel with their block as one unit: shared by hash
in memory, exported to and imported from the disk tier by the same background writer (a
block without them is stored without them).

Written whenever a forward crosses the end of a block that holds the rows: a prompt or chunk
is cut at every such boundary inside it (``cuts``), the rule runs piece by piece and the
states after each piece are stored; the conv state at a boundary
is copied from the convolution's window (exact: it is the boundary's last K - 1 inputs); a
decode token that ends a block stores the states after its step. A boundary a sequence
starts at (its cached prefix) is never rewritten, so a shared block is only read. The
allocator reports a cached prefix only up to the end of a block whose rows were written
(``BlockAllocator.stated``), so a hit is at most ``every`` blocks short of the longest cached
run; ``resume`` reads that block's rows back into a fresh ``DeltaState``.

Exactness: resuming continues from the very float32 state a cold run had at that boundary;
after it, the chunked rule's pieces end where the resumed sequence's blocks hold state rows,
which need not be where a cold run's did: the same arithmetic cut elsewhere, within the
family's 1e-5 (as prefill against decode); the rest (attention over cached KV) is as for any
family. Standalone states (no pool) are not cut.

Cost: a saved boundary is, over the DeltaNet layers, C·(K-1)·dtype + Hv·Dk·Dv·4 bytes
(``state_bytes``): 6400 B at the tests' tiny float32 shapes; at Qwen3-Next-80B's (36 DeltaNet
layers, C = 8192, K = 4, Hv = 32, Dk = Dv = 128, bf16) 36 × (2 MiB + 48 KiB) = 77.3 MB
(73.7 MiB), against 0.79 MB of KV for its 12 attention layers in a 32-token block. Saved in
one block of 16 that is 4.8 MB a block on average (``KVPool.bytes_per_block``), 6.1x the KV
alone: the pool holds ~7x fewer tokens than without saved states, and a follow-up turn
recomputes at most 16 blocks (512 tokens) of its cached prefix. ``state_every = 1`` saves
every boundary (~99x the KV); ``prefix_states=False`` on the model drops the rows and
resumption. Each cut costs one more call of the chunked rule (its last chunk padded to 64
tokens): at ``state_every = 1`` and small blocks a long prompt's DeltaNet layers run about
twice as long on the CPU.
"""

from __future__ import annotations

import torch

from codeagent.backend.cache.paged import KVStream, SeqBlocks


class Snapshots:
    """One sequence's saved states for one DeltaNet layer: a conv row and a recurrent row in each
    of its blocks that holds them."""

    def __init__(self, paged: SeqBlocks, layer: int) -> None:
        self.paged, self.block_size = paged, paged.pool.block_size
        self.names = f"{layer}.conv", f"{layer}.state"
        self.conv, self.recurrent = paged.rows(self.names[0]), paged.rows(self.names[1])

    def cuts(self, start: int, count: int) -> list[int]:
        """Offsets j in 1..count where ``start + j`` ends a block that holds state rows: after
        them a state is saved."""
        bs, table, name = self.block_size, self.paged.table, self.names[0]
        first = (start // bs + 1) * bs - start
        return [
            j
            for j in range(first, count + 1, bs)
            if self.paged.pool.holds(name, table[(start + j) // bs - 1])
        ]

    def save(self, tokens: int, conv: torch.Tensor | None, recurrent: torch.Tensor | None) -> None:
        """The states after ``tokens`` tokens (a multiple of the block size) into that block's rows."""
        index = tokens // self.block_size - 1
        if not self.paged.pool.holds(self.names[0], self.paged.table[index]):
            return  # a block without state rows: no resuming there
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
    every: int = 1,
) -> list[KVStream]:
    """The pool streams of the DeltaNet ``layers``' saved states: one row of each in one block of ``every``."""
    out = []
    for i in layers:
        out.append(KVStream(f"{i}.conv", block_size, (channels, taps - 1), dtype, every))
        out.append(KVStream(f"{i}.state", block_size, (heads, k_dim, v_dim), torch.float32, every))
    return out


def state_bytes(streams: list[KVStream]) -> int:
    """Bytes one saved block boundary takes (the state streams' rows of one block that holds them)."""
    return sum(s.row_bytes() for s in streams if s.name.endswith((".conv", ".state")))
