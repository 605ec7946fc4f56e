"""One step's block tables: where every sequence of a batch keeps its rows in the pool.

The runner builds a ``BlockTables`` once per step from the scheduled sequences (their block
ids, the tokens already in the pool, the new tokens) and the model passes it down to every
layer, so the paged-attention kernels read one layout per step instead of each layer
rebuilding it. Its tensor views are built on first use and kept for the step's other
layers: ``device_batch`` for the Triton kernels (``PagedBatch``: int32 tables, context
lengths, query offsets, the new tokens' pool rows, on the device) and ``padded`` /
``lengths`` for the native CPU decode kernel (int64, on the CPU), and ``shared_groups``: the
decoding sequences that share leading blocks, whose shared rows a decode reads once
(``layers/shared_prefix.py``). A step whose layers never ask builds no tensors.

Limits: the tables index rows of per-token streams (one row per token, ``block_size`` rows
a block), which is what the attention layers page; streams with coarser rows (DeepSeek-V4's
compressed entries) go through ``SeqBlocks`` per sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(slots=True)
class PagedBatch:
    """Where every sequence's rows are, for one forward, as the Triton kernels read it."""

    block_size: int
    table: torch.Tensor  # [N, max_blocks] int32
    ctx: torch.Tensor  # [N] int32, tokens after this step
    qstart: torch.Tensor  # [N + 1] int32, offsets of each sequence's new tokens
    slots: torch.Tensor  # [T] int64, pool rows of the new tokens
    max_ctx: int
    decode: torch.Tensor  # [Nd] int32, sequences with one new token
    sizes: list[int]  # new tokens per sequence
    tiles: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # by BLOCK_Q

    def prefill_tiles(self, block_q: int) -> tuple[torch.Tensor, torch.Tensor]:
        """[tiles] sequence and first query (within it) of each chunk of block_q new tokens."""
        if block_q not in self.tiles:
            pairs = [(i, q) for i, s in enumerate(self.sizes) if s > 1 for q in range(0, s, block_q)]
            device = self.ctx.device
            self.tiles[block_q] = (
                torch.tensor([p[0] for p in pairs], dtype=torch.int32).to(device),
                torch.tensor([p[1] for p in pairs], dtype=torch.int32).to(device),
            )
        return self.tiles[block_q]


def build_batch(
    tables: list[list[int]], cached: list[int], sizes: list[int], block_size: int, device: torch.device | str
) -> PagedBatch:
    """tables: each sequence's block ids; cached: its tokens before this step; sizes: its new tokens."""
    n = len(tables)
    width = max(1, max(len(t) for t in tables))
    table = torch.zeros(n, width, dtype=torch.int32)
    for i, blocks in enumerate(tables):
        table[i, : len(blocks)] = torch.tensor(blocks, dtype=torch.int32)
    ctx = [c + s for c, s in zip(cached, sizes, strict=True)]
    for blocks, total in zip(tables, ctx, strict=True):
        if total > len(blocks) * block_size:
            raise IndexError(f"row {total - 1} is past the sequence's {len(blocks)} blocks")
    qstart = [0]
    for s in sizes:
        qstart.append(qstart[-1] + s)
    seq_of = torch.repeat_interleave(torch.arange(n), torch.tensor(sizes))
    pos = torch.cat([torch.arange(c, c + s) for c, s in zip(cached, sizes, strict=True)])
    slots = table[seq_of, pos // block_size].long() * block_size + pos % block_size
    decode = [i for i, s in enumerate(sizes) if s == 1]

    def ints(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.int32).to(device)

    return PagedBatch(
        block_size,
        table.to(device),
        ints(ctx),
        ints(qstart),
        slots.to(device),
        max(ctx),
        ints(decode),
        list(sizes),
    )


@dataclass(slots=True, eq=False)
class BlockTables:
    """The block tables of one step's sequences, in batch order (built by the runner)."""

    block_size: int  # rows of a per-token stream in one block
    tables: list[list[int]]  # [N] each sequence's block ids (its own list, grown before the step)
    cached: list[int]  # [N] tokens in the pool before this step
    sizes: list[int]  # [N] new tokens this step
    _device_batch: PagedBatch | None = None
    _padded: torch.Tensor | None = None
    _lengths: torch.Tensor | None = None
    _groups: list[tuple[list[int], int]] | None = None

    def device_batch(self, device: torch.device) -> PagedBatch:
        """The Triton kernels' layout, built once per step."""
        if self._device_batch is None:
            self._device_batch = build_batch(self.tables, self.cached, self.sizes, self.block_size, device)
        return self._device_batch

    def padded(self) -> torch.Tensor:
        """[N, widest table] int64 block ids on the CPU, short tables padded with block 0."""
        if self._padded is None:
            widest = max(len(t) for t in self.tables)
            self._padded = torch.tensor([t + [0] * (widest - len(t)) for t in self.tables], dtype=torch.int64)
        return self._padded

    def shared_groups(self, min_tokens: int) -> list[tuple[list[int], int]]:
        """Decoding sequences whose tables begin with the same blocks (one prompt shared through the
        prefix cache), two or more a group: (batch indices, shared whole blocks before every one's new
        row), where the shared rows are at least ``min_tokens``; found once per step."""
        if self._groups is None:
            self._groups = shared_groups(self.tables, self.cached, self.sizes, self.block_size, min_tokens)
        return self._groups

    def lengths(self) -> torch.Tensor:
        """[N] int64 tokens of each sequence after this step, on the CPU."""
        if self._lengths is None:
            after = [c + s for c, s in zip(self.cached, self.sizes, strict=True)]
            self._lengths = torch.tensor(after, dtype=torch.int64)
        return self._lengths


def shared_groups(
    tables: list[list[int]], cached: list[int], sizes: list[int], block_size: int, min_tokens: int
) -> list[tuple[list[int], int]]:
    by_first: dict[int, list[int]] = {}
    for i, (table, size) in enumerate(zip(tables, sizes, strict=True)):
        if size == 1 and table:
            by_first.setdefault(table[0], []).append(i)
    groups = []
    for members in by_first.values():
        if len(members) < 2:
            continue
        limit = min(cached[i] // block_size for i in members)  # whole blocks before every new row
        first, common = tables[members[0]], 0
        while common < limit and all(tables[i][common] == first[common] for i in members[1:]):
            common += 1
        if common and common * block_size >= min_tokens:
            groups.append((members, common))
    return groups
