"""Blocks for sequences: admission through the prefix cache (memory, then disk), room for the
next token, registration of computed blocks, release with persistence to the disk tier.

``BlockAllocator`` is the sequence-level face of the cache. It owns the pool of row tensors
(``paged.py``), the block bookkeeping (``blocks.py``: ids, chain hashes, reference counts,
LRU eviction) and the disk tier with its writer thread (``disk.py``), and works on anything
shaped like a sequence (``CachedSequence``: its tokens, block table, the chain hashes of its
registered blocks and how many leading tokens have their state in the pool).

Admission takes the longest run of the sequence's full blocks cached in memory, continues
the chain on disk (each block read back, checked and imported into a fresh block), and
gives fresh blocks for the rest. A file on disk that cannot be used (torn, unreadable, or not
this pool's block) is deleted there and ends the chain: its tokens are computed, the request
goes on. A hit always leaves at least one token to compute: its
logits give the first sampled token. Once a full block's content is computed it is
registered under its chain hash, prompt or generated alike, so the next turn of a
conversation hits the reply too. Releasing a finished sequence first queues its registered
blocks that are not on disk yet for the writer; a preempted one is released without.
The chain starts from a namespace naming the model and the cache layout, so caches of
different models or block layouts never mix, in memory or on disk.
A model whose sequences keep state outside the blocks is built ``resumable=False``: prefix
caching is off for it, no hit and no registration. A model may instead save that state in
streams held by only one block in ``every`` (``KVStream.every``; Qwen3-Next's DeltaNet
states): then a sequence's block at index k gets a block that holds them when k + 1 is a
multiple of ``every`` (a preference: ``BlockManager.fresh`` looks for one among the free
blocks), ``stated`` names the blocks whose saved rows were written (registered after a
forward crossed their end, or read back from disk with them), and an admission resumes only
at the end of a stated block: the cached run is cut back to its last stated block (the
blocks after it are released and recomputed), so a hit is at most ``every`` blocks short of
the longest cached prefix. The disk tier stores those rows with the blocks that have them.

``CacheConfig`` sizes the pool: blocks of ``block_size`` tokens (rounded up to the model's
multiple), as many as ``memory_bytes`` holds (default: min(4 GiB, 30% of available memory)
on CPU, 85% of free memory on CUDA) unless ``num_blocks`` says.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from codeagent.backend.cache.blocks import BlockManager, OutOfBlocks, chain_hash
from codeagent.backend.cache.disk import DiskTier, DiskWriter
from codeagent.backend.cache.paged import KVPool, KVStream

DEFAULT_BLOCK_TOKENS = 32
CPU_POOL_CAP = 4 * 2**30


@dataclass(slots=True)
class CacheConfig:
    block_size: int | None = None  # tokens per block; default 32, rounded up to the model's multiple
    num_blocks: int | None = None  # default: from memory_bytes
    memory_bytes: int | None = None  # default: min(4 GiB, 30% of available) on CPU, 85% of free on CUDA
    prefix_caching: bool = True
    disk_folder: Path | None = None  # the disk tier's root; None: no disk tier
    disk_max_bytes: int = 8 * 2**30

    def block_tokens(self, multiple: int) -> int:
        """Tokens per block: the asked size rounded up to a multiple the model allows."""
        block = self.block_size or DEFAULT_BLOCK_TOKENS
        return -(-block // multiple) * multiple

    def pool_blocks(self, block_bytes: int, device: torch.device) -> int:
        return self.num_blocks or max(2, (self.memory_bytes or pool_budget(device)) // block_bytes)


class CachedSequence(Protocol):
    tokens: list[int]  # prompt + generated
    table: list[int]  # block ids, in order
    hashes: list[bytes]  # chain hashes of the registered full blocks
    computed: int  # leading tokens whose state is in the pool


class DiskMirror(Protocol):
    """Other holders of the same blocks (a split engine's ranks) that must move their rows of a
    block to or from their own disk tiers whenever this allocator does."""

    def on_disk(self, digests: list[bytes]) -> int:
        """How many leading blocks of ``digests`` every holder can read back."""
        ...

    def moved(self, kind: str, block: int, digest: bytes) -> None:
        """This allocator imported ("import") or queued for export ("export") ``block``."""
        ...


@dataclass(slots=True)
class Admission:
    cached: int  # leading tokens whose state the pool already holds (memory or disk)
    from_disk: int  # of those, read back from the disk tier
    computing: list[bytes]  # chain hashes of the full prompt blocks the sequence computes itself


class BlockAllocator:
    def __init__(
        self,
        streams: list[KVStream],
        config: CacheConfig,
        block_size: int,
        device: torch.device,
        namespace: bytes,
        disk_subfolder: str = "",
        resumable: bool = True,
    ) -> None:
        """``resumable`` False: the model keeps state no block holds (``CausalLM.resumes_from_blocks``),
        so no sequence starts from cached blocks and none are registered (nothing could use them)."""
        self.block_size = block_size
        self.block_bytes = KVPool.bytes_per_block(streams, block_size)
        self.pool = KVPool(streams, block_size, config.pool_blocks(self.block_bytes, device), device)
        layout = f"{block_size}:" + ",".join(f"{s.name}/{s.tokens_per_row}/{s.dtype}" for s in streams)
        self.namespace = chain_hash(namespace + layout.encode(), [])
        self.blocks = BlockManager(self.pool.num_blocks, block_size, self.namespace)
        self.prefix_caching = config.prefix_caching and resumable
        self.disk: DiskTier | None = None
        self.writer: DiskWriter | None = None
        if config.disk_folder is not None:
            folder = config.disk_folder / self.namespace.hex()[:32] / disk_subfolder
            self.disk = DiskTier(folder, config.disk_max_bytes)
            self.writer = DiskWriter(self.disk)
        self.persisted: set[bytes] = set()  # chain hashes on disk or queued for it
        self.sparse = [s for s in streams if s.every > 1]  # saved state only some blocks hold
        self.every = max((s.every for s in self.sparse), default=1)
        self.stated: set[int] = set()  # blocks whose sparse rows were written (resumable there)
        self.persisted_stated: set[bytes] = set()  # chain hashes on disk (or queued) with those rows
        self.mirror: DiskMirror | None = None

    def blocks_for(self, seq: CachedSequence) -> int:
        return -(-len(seq.tokens) // self.block_size)

    def chain(self, seq: CachedSequence) -> list[bytes]:
        """Chain hashes of the blocks of seq a hit may cover: its full blocks but the one holding
        its last token (that token is always computed: its logits give the next one)."""
        limit = (len(seq.tokens) - 1) // self.block_size if self.prefix_caching else 0
        return self.blocks.chain(seq.tokens[: limit * self.block_size])

    def first_missing(self, seq: CachedSequence) -> bytes | None:
        """The chain hash of seq's first block a hit in memory could not cover now, or None."""
        digests = self.chain(seq)
        hits = len(self.blocks.lookup(digests))
        return digests[hits] if hits < len(digests) else None

    def allocate(self, seq: CachedSequence) -> Admission | None:
        """Give seq its table: the longest cached prefix (memory, then disk), fresh blocks for the
        rest; None, with nothing taken, when the free blocks do not suffice."""
        bs = self.block_size
        digests = self.chain(seq)
        hits = self.blocks.lookup(digests)
        total = self.blocks_for(seq)
        if self.blocks.blocks_needed(hits, total) > self.blocks.free:
            return None
        table = [self.blocks.acquire(b) for b in hits]
        from_disk = self._import(digests[len(table) :], table)
        if self.sparse:  # resume only where the saved state was written: cut back to a stated block
            keep = len(table)
            while keep and table[keep - 1] not in self.stated:
                keep -= 1
            dropped = table[keep:]
            del table[keep:]
            self.blocks.release(dropped)
            from_disk = max(0, keep - len(hits))
            if total - keep > self.blocks.free:
                self.blocks.release(table)
                return None
        reused = len(table)
        while len(table) < total:
            table.append(self._fresh(len(table)))
        seq.table, seq.computed, seq.hashes = table, reused * bs, digests[:reused]
        return Admission(reused * bs, from_disk * bs, digests[reused:])

    def _fresh(self, index: int, stated: bool | None = None) -> int:
        """A fresh block for a sequence's block ``index``: one holding the sparse streams where
        ``index + 1`` is a multiple of ``every`` (or ``stated`` says so), one without elsewhere."""
        if not self.sparse:
            return self.blocks.fresh()
        want = (index + 1) % self.every == 0 if stated is None else stated
        name = self.sparse[0].name
        block = self.blocks.fresh(lambda b: self.pool.holds(name, b) == want)
        self.stated.discard(block)
        return block

    def _import(self, digests: list[bytes], table: list[int]) -> int:
        """Continue ``table`` with the blocks of ``digests`` found on disk, in order; how many."""
        if self.disk is None or not digests:
            return 0
        if self.mirror is not None:
            digests = digests[: self.mirror.on_disk(digests)]
        count = 0
        for digest in digests:
            if not self.disk.path(digest).exists():
                break
            rows = self.disk.get(digest)
            if rows is None:
                break
            saved = bool(self.sparse) and all(s.name in rows for s in self.sparse)
            block = self._fresh(len(table), saved)
            try:
                self.pool.import_block(block, rows)
            except ValueError as err:  # a whole file that is not this pool's block: gone, recomputed
                self.blocks.release([block])
                self.disk.drop(digest, str(err))
                break
            if saved and self.pool.holds(self.sparse[0].name, block):
                self.stated.add(block)
                self.persisted_stated.add(digest)
            self.blocks.register(block, digest)
            self.persisted.add(digest)
            table.append(block)
            count += 1
            if self.mirror is not None:
                self.mirror.moved("import", block, digest)
        return count

    def may_append(self, seq: CachedSequence) -> bool:
        """Make room for seq's next token (a fresh block if its table is full); False if none is free."""
        if seq.computed + 1 <= len(seq.table) * self.block_size:
            return True
        try:
            seq.table.append(self._fresh(len(seq.table)))
        except OutOfBlocks:
            return False
        return True

    def register(self, seq: CachedSequence) -> None:
        """Put seq's newly computed full blocks under their chain hashes."""
        if not self.prefix_caching:
            return
        bs = self.block_size
        for k in range(len(seq.hashes), seq.computed // bs):
            previous = seq.hashes[-1] if seq.hashes else self.namespace
            digest = chain_hash(previous, seq.tokens[k * bs : (k + 1) * bs])
            self.blocks.register(seq.table[k], digest)
            seq.hashes.append(digest)
            if self.sparse and self.pool.holds(self.sparse[0].name, seq.table[k]):
                self.stated.add(seq.table[k])  # the forward that crossed the block's end saved there
                if self.blocks.by_hash[digest] not in self.stated:  # an earlier copy no one can resume at
                    self.blocks.by_hash[digest] = seq.table[k]

    def free(self, seq: CachedSequence, persist: bool) -> None:
        """Release seq's blocks (still cached, evictable); with ``persist``, queue those not on disk."""
        if persist and self.writer is not None:
            for block, digest in zip(seq.table, seq.hashes, strict=False):
                stated = block in self.stated
                if digest not in self.persisted or (stated and digest not in self.persisted_stated):
                    self.persisted.add(digest)  # (a copy with saved state rows replaces one without)
                    rows = self.pool.export_block(block)
                    if stated:
                        self.persisted_stated.add(digest)
                    else:
                        for stream in self.sparse:
                            rows.pop(stream.name, None)
                    self.writer.put(digest, rows)
                    if self.mirror is not None:
                        self.mirror.moved("export", block, digest)
        self.blocks.release(seq.table)

    def flush(self) -> None:
        """Wait until every block queued for the disk tier is written."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def pool_budget(device: torch.device) -> int:
    """Bytes the pool takes when not told: 85% of free GPU memory, or min(4 GiB, 30% of available)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.85)
    return min(CPU_POOL_CAP, int(_available_memory() * 0.3))


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
