"""Block manager with prefix caching: which pool blocks hold which tokens, shared by hash.

A sequence's tokens fill fixed-size blocks; its block table lists them in order. Once a
full block's content is computed, the engine registers it under a hash chained from its
predecessor's (the chain starts from a namespace naming the model and the cache layout),
so equal prefixes map to equal hash chains and a new request can reuse the longest run of
cached full blocks instead of recomputing them. Registration happens only after the
content exists, so no request can share a block that is still being filled. Blocks are
reference-counted; a block nobody references stays cached but becomes evictable, and the
least recently released one is reused first when a fresh block is needed. Tokens a
sequence generates are registered the same way once their block fills, so the next turn
of a conversation hits the assistant's own reply.

A fresh block may be asked with a preference (``fresh(prefer)``): the allocator asks for
blocks that hold, or do not hold, a stream only some blocks have (``paged.KVStream.every``).

Limits: only full blocks are shared (a partial last block is always private); the pool
size is fixed at construction; if two sequences compute the same block at once, the
first registered copy is the one shared and the second stays private.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice

SCAN = 256  # free blocks ``fresh`` looks through for a preferred one


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

    @property
    def free(self) -> int:
        """Blocks a request may take now (unreferenced, cached or not)."""
        return len(self.evictable)

    def chain(self, tokens: list[int]) -> list[bytes]:
        """The hash chain of the full blocks of ``tokens``."""
        out, previous = [], self.namespace
        for start in range(0, len(tokens) - self.block_size + 1, self.block_size):
            previous = chain_hash(previous, tokens[start : start + self.block_size])
            out.append(previous)
        return out

    def lookup(self, digests: list[bytes]) -> list[int]:
        """Ids of the cached blocks matching the longest prefix of ``digests``."""
        found = []
        for digest in digests:
            block = self.by_hash.get(digest)
            if block is None:
                break
            found.append(block)
        return found

    def blocks_needed(self, hits: list[int], total: int) -> int:
        """Free blocks a table of ``total`` blocks takes when ``hits`` start it."""
        revived = sum(1 for b in hits if self.blocks[b].ref_count == 0)  # they leave the evictable set
        return total - len(hits) + revived

    def acquire(self, block_id: int) -> int:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            del self.evictable[block_id]
        block.ref_count += 1
        return block_id

    def fresh(self, prefer: Callable[[int], bool] | None = None) -> int:
        """An empty block: a never-used one, or the least recently released (its hash forgotten).
        With ``prefer``, the first such block (among the next ``SCAN``) whose id it accepts, when any."""
        if not self.evictable:
            raise OutOfBlocks("no free block")
        block_id = next(iter(self.evictable))
        if prefer is not None and not prefer(block_id):
            block_id = next((b for b in islice(self.evictable, SCAN) if prefer(b)), block_id)
        del self.evictable[block_id]
        block = self.blocks[block_id]
        if block.hash is not None and self.by_hash.get(block.hash) == block_id:
            del self.by_hash[block.hash]
        block.hash = None
        block.ref_count = 1
        return block_id

    def register(self, block_id: int, digest: bytes) -> None:
        """Block ``block_id`` now holds the computed tokens that ``digest`` names: others may share it."""
        block = self.blocks[block_id]
        if block.hash is None:
            block.hash = digest
            self.by_hash.setdefault(digest, block_id)

    def release(self, table: list[int]) -> None:
        """A sequence is done (or preempted): its blocks stay cached, evictable newest last."""
        for block_id in reversed(table):  # the tail goes first, so prefixes outlive their extensions
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.evictable[block_id] = None
                if block.hash is None:  # nothing worth keeping: reused before any cached block
                    self.evictable.move_to_end(block_id, last=False)
        table.clear()
