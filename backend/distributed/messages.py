"""What rank 0 tells the other ranks of a split engine, one message at a time.

Rank 0 alone schedules and allocates; the others hold their share of every block in a pool
of the same size and follow. Everything that changes what the pools hold is a message:

- ``Setup``: the pool's geometry and the cache namespace (once, before anything else);
- ``Plan``: one step: for each scheduled sequence its id, the token ids to compute, the
  position of the first, its block table, and whether its decoding state starts afresh
  (admitted, or recomputed after a preemption, over ``cached`` tokens already in the pool);
  the sequences that ended since the last plan; the disk tier's imports and exports rank 0
  made meanwhile (each rank moves its own rows of those blocks, in the same order);
- ``Probe``: how many leading blocks of a chain every rank could import from its disk
  tier (answered by an all-reduce of the minimum, so rank 0 imports only what all can);
- ``Stop``: the engine is closing.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Setup:
    block_size: int
    num_blocks: int
    namespace: bytes  # the cache chain's root: names the model and the layout
    disk_folder: str | None  # the disk tier's root; each rank keeps its rows below it
    disk_max_bytes: int


@dataclass(frozen=True, slots=True)
class Work:
    seq_id: int
    tokens: list[int]  # the new tokens to compute this step
    start: int  # position of the first (= tokens already computed)
    table: list[int]  # the sequence's block table
    fresh: bool  # a new decoding state over ``start`` cached tokens


@dataclass(frozen=True, slots=True)
class DiskOp:
    kind: str  # "import" (disk -> block) or "export" (block -> disk)
    block: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class Plan:
    work: list[Work]
    ended: list[int] = field(default_factory=list)
    disk: list[DiskOp] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Probe:
    digests: list[bytes]


@dataclass(frozen=True, slots=True)
class Stop:
    disk: list[DiskOp] = field(default_factory=list)
