"""The paged KV pool: preallocated tensors cut into blocks, and the row streams models write.

A model describes what one block of ``block_size`` tokens leaves behind as a list of
``KVStream`` specs: a name, how many tokens one row covers (1 for per-token keys and
values or DeepSeek-V4's latents, the compression rate for compressed entries,
``block_size`` for state kept once per block such as V4's compressor overlap), and a row's
shape and dtype. A stream with ``every`` > 1 is held by only the first 1/every of the blocks
(ids below ``held``): Qwen3-Next's saved DeltaNet states, too large for every block; the
allocator decides which sequence blocks get such a block, writers check ``holds``. ``KVPool`` allocates, per stream, one tensor of ``num_blocks`` blocks'
rows; block ``b`` owns rows ``[b * rows_per_block, (b + 1) * rows_per_block)`` of every
stream, so a block can be shared, exported to disk or imported as one unit.

A sequence holds a block table (``SeqBlocks``); each of its streams is a ``PagedRows`` that
appends rows at the slots its table maps them to and gathers them back in order. Models
only see the ``Rows`` protocol (``append``, ``read``, ``put``, ``get``, ``len``), met also by
``GrowingRows`` (a private growing tensor) for use without an engine, so the same model
code runs standalone and paged.

Limits: reads gather rows into a contiguous tensor (one copy per layer and step) unless the
sequence's blocks happen to be consecutive in the pool, when a read is a view (the Triton
paged-attention kernels read the pool in place through the block table); and every
per-token row stays for the sequence's life even where the model only looks back a
window (DeepSeek-V4's sliding latents): prefix reuse at any block boundary needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass(frozen=True, slots=True)
class KVStream:
    name: str
    tokens_per_row: int
    row_shape: tuple[int, ...]
    dtype: torch.dtype
    every: int = 1  # rows for one block in ``every``: blocks [0, ceil(num_blocks / every)) hold them

    def held_blocks(self, num_blocks: int) -> int:
        """How many of ``num_blocks`` blocks (the lowest ids) have this stream's rows."""
        return -(-num_blocks // self.every)

    def rows_per_block(self, block_size: int) -> int:
        if block_size % self.tokens_per_row:
            raise ValueError(
                f"block size {block_size} is not a multiple of {self.name}'s {self.tokens_per_row}"
            )
        return block_size // self.tokens_per_row

    def row_bytes(self) -> int:
        numel = 1
        for size in self.row_shape:
            numel *= size
        return numel * torch.empty((), dtype=self.dtype).element_size()


class Rows(Protocol):
    """One growing sequence of rows (a layer's keys, a compressor's entries...)."""

    def __len__(self) -> int: ...

    def append(self, rows: torch.Tensor) -> None: ...

    def read(self, start: int = 0, end: int | None = None) -> torch.Tensor: ...

    def put(self, index: int, row: torch.Tensor) -> None:
        """Write one row at ``index`` (rows kept once per block; the length follows the largest index)."""
        ...

    def get(self, index: int) -> torch.Tensor: ...


def growing_rows(name: str, length: int = 0) -> Rows:
    if length:
        raise ValueError("growing rows start empty; prefix reuse needs the paged pool")
    return GrowingRows()


class GrowingRows:
    """Rows in a private tensor that grows by concatenation: models used without an engine."""

    def __init__(self) -> None:
        self.data: torch.Tensor | None = None
        self.sparse: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return 0 if self.data is None else self.data.shape[0]

    def append(self, rows: torch.Tensor) -> None:
        self.data = rows if self.data is None else torch.cat((self.data, rows))

    def read(self, start: int = 0, end: int | None = None) -> torch.Tensor:
        assert self.data is not None, "nothing written yet"
        return self.data[start:end]

    def put(self, index: int, row: torch.Tensor) -> None:
        self.sparse[index] = row

    def get(self, index: int) -> torch.Tensor:
        return self.sparse[index]


class KVPool:
    """Per stream, one preallocated tensor [num_blocks * rows_per_block, *row_shape].

    Left uninitialised (pages are touched only when written): every read is of rows a
    sequence wrote or a block import filled."""

    def __init__(
        self, streams: list[KVStream], block_size: int, num_blocks: int, device: torch.device
    ) -> None:
        if num_blocks < 1:
            raise ValueError("the KV pool needs at least one block")
        self.streams = {s.name: s for s in streams}
        self.block_size, self.num_blocks, self.device = block_size, num_blocks, device
        self.per_block = {s.name: s.rows_per_block(block_size) for s in streams}
        self.held = {s.name: s.held_blocks(num_blocks) for s in streams}
        self.tensors = {
            s.name: torch.empty(
                self.held[s.name] * self.per_block[s.name], *s.row_shape, dtype=s.dtype, device=device
            )
            for s in streams
        }

    @staticmethod
    def bytes_per_block(streams: list[KVStream], block_size: int) -> int:
        """Bytes a block costs on average (a stream held by one block in ``every`` counts 1/every)."""
        return sum(-(-s.rows_per_block(block_size) * s.row_bytes() // s.every) for s in streams)

    def holds(self, name: str, block: int) -> bool:
        """Whether block ``block`` has rows of stream ``name`` (every block, unless ``every`` > 1)."""
        return block < self.held[name]

    def export_block(self, block: int) -> dict[str, torch.Tensor]:
        """A copy of everything block ``block`` holds, on the CPU (for the disk tier)."""
        return {
            name: tensor[block * self.per_block[name] : (block + 1) * self.per_block[name]].to(
                "cpu", copy=True
            )
            for name, tensor in self.tensors.items()
            if self.holds(name, block)
        }

    def import_block(self, block: int, rows: dict[str, torch.Tensor]) -> None:
        """Fill block ``block`` from an export: every stream every block holds must be there; rows
        of streams only some blocks hold are taken where this block holds them, else dropped."""
        sparse = {s.name for s in self.streams.values() if s.every > 1}
        if rows.keys() - sparse != self.tensors.keys() - sparse or not rows.keys() <= self.tensors.keys():
            raise ValueError("the block's streams do not match this pool's")
        for name, tensor in self.tensors.items():
            if name not in rows or not self.holds(name, block):
                continue
            n = self.per_block[name]
            if rows[name].shape != tensor[:n].shape or rows[name].dtype != tensor.dtype:
                raise ValueError(f"the block's {name} has the wrong shape or dtype")
            tensor[block * n : (block + 1) * n].copy_(rows[name])


class SeqBlocks:
    """One sequence's block table over a pool, and the slot arithmetic its streams share."""

    def __init__(self, pool: KVPool, table: list[int]) -> None:
        self.pool = pool
        self.table = table  # grown by the engine before a forward needs the room
        self._index: dict[tuple[int, int], torch.Tensor] = {}
        self._run: tuple[int, int] = (-1, 0)  # (table length checked, blocks from the first in one run)

    def rows(self, name: str, length: int = 0) -> PagedRows:
        return PagedRows(self, name, length)

    def slots(self, name: str, start: int, end: int) -> torch.Tensor:
        """Flat pool indices of rows [start, end) of stream ``name``."""
        per = self.pool.per_block[name]
        key = (per, len(self.table))
        index = self._index.get(key)
        if index is None:  # rows of every block in the table, in order; rebuilt when the table grows
            table = torch.tensor(self.table, dtype=torch.long, device=self.pool.device)
            index = (table[:, None] * per + torch.arange(per, device=self.pool.device)[None, :]).flatten()
            self._index[key] = index
            for stale in [k for k in self._index if k[0] == per and k[1] != len(self.table)]:
                del self._index[stale]
        if end > index.shape[0]:
            raise IndexError(f"{self.pool.streams[name].name}: row {end - 1} is past the sequence's blocks")
        return index[start:end]

    def span(self, name: str, start: int, end: int) -> slice | None:
        """Rows [start, end) as one slice of the pool tensor when their blocks are consecutive
        there (a sequence given fresh blocks in order usually is), so reads need no gather."""
        if self._run[0] != len(self.table):
            run = 1
            while run < len(self.table) and self.table[run] == self.table[0] + run:
                run += 1
            self._run = (len(self.table), run if self.table else 0)
        per = self.pool.per_block[name]
        if end > self._run[1] * per:
            return None
        first = self.table[0] * per
        return slice(first + start, first + end)


class PagedRows:
    def __init__(self, seq: SeqBlocks, name: str, length: int = 0) -> None:
        self.seq, self.name, self.length = seq, name, length
        self.tensor = seq.pool.tensors[name]

    def __len__(self) -> int:
        return self.length

    def append(self, rows: torch.Tensor) -> None:
        n = rows.shape[0]
        if n:
            self.tensor.index_copy_(0, self.seq.slots(self.name, self.length, self.length + n), rows)
            self.length += n

    def read(self, start: int = 0, end: int | None = None) -> torch.Tensor:
        end = self.length if end is None else end
        run = self.seq.span(self.name, start, end)
        if run is not None:
            return self.tensor[run]  # a view: the rows are consecutive in the pool
        return self.tensor.index_select(0, self.seq.slots(self.name, start, end))

    def put(self, index: int, row: torch.Tensor) -> None:
        self.tensor[self.seq.slots(self.name, index, index + 1)] = row[None]
        self.length = max(self.length, index + 1)

    def get(self, index: int) -> torch.Tensor:
        return self.tensor[self.seq.slots(self.name, index, index + 1)][0]
