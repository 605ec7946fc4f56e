"""Block manager with prefix caching: which pool blocks hold which tokens, shared by hash.

A sequence's tokens fill fixed-size blocks; its block table lists them in order. A block
that is full gets a hash chained from its predecessor's (and from a namespace naming the
model and cache layout), so equal prefixes map to equal hash chains and a new request can
reuse the longest run of cached full blocks instead of recomputing them. Blocks are
reference-counted; a block nobody references stays cached but becomes evictable, and the
least recently released one is reused first when a fresh block is needed. Tokens a sequence
generates join the cache the same way once their block fills, so the next turn of a
conversation hits the assistant's own reply.

Limits: only full blocks are shared (a partial last block is always private); the pool
size is fixed at construction.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field


class OutOfBlocks(RuntimeError):
    """The pool cannot hold the request now; the scheduler waits or preempts."""


@dataclass(slots=True)
class Block:
    id: int
    ref_count: int = 0
    hash: bytes | None = None  # set once the block is full and registered


def chain_hash(previous: bytes, tokens: list[int] | tuple[int, ...]) -> bytes:
    digest = hashlib.sha256(previous)
    digest.update(b"".join(token.to_bytes(4, "little", signed=False) for token in tokens))
    return digest.digest()


@dataclass(slots=True)
class Allocation:
    table: list[int]  # block ids in order
    cached_tokens: int  # leading tokens whose blocks came from the cache


@dataclass
class BlockManager:
    num_blocks: int
    block_size: int
    namespace: bytes = b""  # model and layout: caches of different models never mix
    blocks: list[Block] = field(init=False)
    evictable: OrderedDict[int, None] = field(init=False)  # ref_count 0, least recently released first
    by_hash: dict[bytes, int] = field(init=False)

    def __post_init__(self) -> None:
        if self.num_blocks <= 0 or self.block_size <= 0:
            raise ValueError("num_blocks and block_size must be positive")
        self.blocks = [Block(i) for i in range(self.num_blocks)]
        self.evictable = OrderedDict((i, None) for i in range(self.num_blocks))
        self.by_hash = {}

    def hashes(self, tokens: list[int]) -> list[bytes]:
        """The hash chain of the full blocks of ``tokens``."""
        out, previous = [], self.namespace
        for start in range(0, len(tokens) - self.block_size + 1, self.block_size):
            previous = chain_hash(previous, tokens[start : start + self.block_size])
            out.append(previous)
        return out

    def cached_prefix(self, tokens: list[int]) -> list[int]:
        """Ids of the cached blocks matching the longest full-block prefix of ``tokens``."""
        found = []
        for digest in self.hashes(tokens):
            block = self.by_hash.get(digest)
            if block is None:
                break
            found.append(block)
        return found

    def blocks_needed(self, tokens: list[int]) -> int:
        total = -(-len(tokens) // self.block_size)
        reusable = self.cached_prefix(tokens)
        fresh = total - len(reusable)
        revived = sum(1 for b in reusable if self.blocks[b].ref_count == 0)  # they leave the evictable set
        return fresh + revived

    def can_allocate(self, tokens: list[int]) -> bool:
        return self.blocks_needed(tokens) <= len(self.evictable)

    def allocate(self, tokens: list[int]) -> Allocation:
        """Blocks for a new sequence's ``tokens``: the cached prefix shared, the rest fresh."""
        if not self.can_allocate(tokens):
            raise OutOfBlocks(f"{self.blocks_needed(tokens)} blocks needed, {len(self.evictable)} free")
        table = [self._acquire(b) for b in self.cached_prefix(tokens)]
        cached = len(table) * self.block_size
        while len(table) * self.block_size < len(tokens):
            table.append(self._fresh())
        self._register(
            table, tokens, start_block=len(table) if cached == len(tokens) else cached // self.block_size
        )
        return Allocation(table, cached)

    def append(self, table: list[int], tokens: list[int]) -> None:
        """``tokens`` is the sequence after one more token: add a block if needed, register a filled one."""
        if len(tokens) > len(table) * self.block_size:
            if not self.evictable:
                raise OutOfBlocks("no free block for the next token")
            table.append(self._fresh())
        if len(tokens) % self.block_size == 0:
            self._register(table, tokens, start_block=len(tokens) // self.block_size - 1)

    def release(self, table: list[int]) -> None:
        """A sequence is done (or preempted): its blocks stay cached, evictable newest last."""
        for block_id in reversed(table):  # the tail goes first, so prefixes outlive their extensions
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.evictable[block_id] = None
        table.clear()

    def _acquire(self, block_id: int) -> int:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            del self.evictable[block_id]
        block.ref_count += 1
        return block_id

    def _fresh(self) -> int:
        block_id, _ = self.evictable.popitem(last=False)  # least recently released
        block = self.blocks[block_id]
        if block.hash is not None and self.by_hash.get(block.hash) == block_id:
            del self.by_hash[block.hash]
        block.hash = None
        block.ref_count = 1
        return block_id

    def _register(self, table: list[int], tokens: list[int], start_block: int) -> None:
        """Give the full blocks from ``start_block`` on their chain hashes, so others can share them."""
        digests = self.hashes(tokens)
        for index in range(start_block, len(digests)):
            block = self.blocks[table[index]]
            if block.hash is None:
                block.hash = digests[index]
                self.by_hash.setdefault(digests[index], table[index])
