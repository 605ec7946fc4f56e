"""The engine: continuous batching over a paged KV pool with prefix caching in memory and on disk.

Requests are token ids plus sampling parameters; the engine knows nothing of text. Every
``step()`` is one forward pass over a flattened batch (``models/base.py``) that mixes
sequences in decode (one token each, scheduled first) with chunks of prompts being
prefilled, under a token budget per step (chunked prefill), so a long prompt never stalls
the others' decoding and new requests join while others decode.

Memory: a ``KVPool`` preallocated from free memory (or a given size) holds every
sequence's per-token state in blocks; a ``BlockManager`` maps tokens to blocks. A full
block is registered under the hash chain of its tokens (namespaced by the model and the
cache layout) once its content is computed, prompt or generated alike, so a request
whose tokens start the same way reuses the longest cached run of blocks and prefills
only the rest; finished sequences' blocks stay cached until evicted, least recently used
first. With a disk tier, finished blocks are also written (on a background thread) to
checksummed files, and an admission that runs out of memory hits continues the chain on
disk, so a new process reopening the same prompt skips the prefill.

A prefix hit always leaves at least one token to compute (its logits give the first
sampled token). DeepSeek-V4's blocks are multiples of its compression rates, so a
boundary never splits a window, and its per-block overlap rows carry the compressor
state across a resume (``cache/paged.py``, ``models/deepseek_v4.py``).

When a decoding sequence needs a block and none is free, the newest running sequence is
preempted: its blocks are released (still cached, so it usually re-admits with a prefix
hit) and it goes back to the front of the queue to be recomputed; it is never truncated.
A request that could not fit the whole pool even alone is refused when submitted.

Stop conditions: end-of-sequence ids (unless ``ignore_eos``), ``stop_token_ids``,
``max_tokens``, and the caller's ``on_token`` hook returning False (stop strings,
client-side logic); ``abort`` cancels a request at the next step. Results do not depend
on the batch: every sequence's positions, cache rows and sampling generator are its own.

Threading: one thread drives an engine (``service.py`` runs it in the background for
servers and shared clients); ``generate`` is the synchronous front for one caller.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from codeagent.backend.cache.blocks import BlockManager, OutOfBlocks, chain_hash
from codeagent.backend.cache.disk import DiskTier
from codeagent.backend.cache.paged import KVPool, SeqBlocks
from codeagent.backend.layers.sampler import SamplingParams, sample
from codeagent.backend.models.base import SeqSlice

TokenHook = Callable[[int], bool]  # new token id -> keep going?

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


@dataclass(slots=True)
class Request:
    prompt_ids: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    on_token: TokenHook | None = None


@dataclass(slots=True)
class Result:
    token_ids: list[int]
    finish_reason: str  # "stop" (eos, stop id, caller), "length", "cancelled" or "error"
    prompt_tokens: int
    cached_tokens: int = 0  # prompt tokens served from the prefix cache (memory or disk)
    disk_tokens: int = 0  # of those, read back from the disk tier
    prefill_s: float = 0.0  # submission to first token (queueing included)
    decode_s: float = 0.0  # first token to finish
    error: str | None = None
    preemptions: int = 0


class CapacityError(ValueError):
    """A request the KV pool could not hold even alone."""


@dataclass(eq=False)
class Sequence:
    id: int
    request: Request
    tokens: list[int]  # prompt + generated; after a preemption all of it is recomputed
    generator: torch.Generator | None
    arrived: float
    table: list[int] = field(default_factory=list)
    state: Any = None
    computed: int = 0  # leading tokens whose state is in the pool
    hashes: list[bytes] = field(default_factory=list)  # chain of the registered full blocks
    cached_tokens: int = -1  # set at first admission
    disk_tokens: int = 0
    first_token_at: float | None = None
    finished_at: float | None = None
    finish: str | None = None
    error: str | None = None
    preemptions: int = 0

    @property
    def prompt_len(self) -> int:
        return len(self.request.prompt_ids)

    @property
    def generated(self) -> list[int]:
        return self.tokens[self.prompt_len :]

    def result(self) -> Result:
        done = self.finished_at or time.perf_counter()
        first = self.first_token_at or done
        return Result(
            self.generated,
            self.finish or "stop",
            self.prompt_len,
            max(self.cached_tokens, 0),
            self.disk_tokens,
            first - self.arrived,
            done - first,
            self.error,
            self.preemptions,
        )


@dataclass
class EngineStats:
    steps: int = 0
    prefill_tokens: int = 0  # computed, not served from cache
    decode_tokens: int = 0
    cached_tokens: int = 0
    disk_tokens: int = 0
    preemptions: int = 0


class Engine:
    def __init__(
        self,
        model: Any,
        eos_token_ids: set[int],
        device: str | torch.device = "cpu",
        cache: CacheConfig | None = None,
        max_batch_tokens: int = 2048,
        max_seqs: int = 64,
        namespace: bytes = b"",
    ) -> None:
        self.model = model
        self.eos = set(eos_token_ids)
        self.device = torch.device(device)
        self.cache_config = cache = cache or CacheConfig()
        if max_batch_tokens < 1 or max_seqs < 1:
            raise ValueError("max_batch_tokens and max_seqs must be positive")
        self.max_batch_tokens, self.max_seqs = max_batch_tokens, max_seqs
        multiple = int(getattr(model, "block_multiple", 1))
        block = cache.block_size or DEFAULT_BLOCK_TOKENS
        self.block_size = -(-block // multiple) * multiple
        streams = model.cache_streams(self.block_size)
        self.block_bytes = KVPool.bytes_per_block(streams, self.block_size)
        num_blocks = cache.num_blocks or max(
            2, (cache.memory_bytes or self._pool_budget()) // self.block_bytes
        )
        self.pool = KVPool(streams, self.block_size, num_blocks, self.device)
        layout = f"{self.block_size}:" + ",".join(f"{s.name}/{s.tokens_per_row}/{s.dtype}" for s in streams)
        self.namespace = chain_hash(namespace + layout.encode(), [])
        self.blocks = BlockManager(num_blocks, self.block_size, self.namespace)
        self.disk: DiskTier | None = None
        self._writer: _DiskWriter | None = None
        if cache.disk_folder is not None:
            self.disk = DiskTier(cache.disk_folder / self.namespace.hex()[:32], cache.disk_max_bytes)
            self._writer = _DiskWriter(self.disk)
        self._persisted: set[bytes] = set()
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self._ids = itertools.count()
        self._aborted: set[int] = set()
        self.stats = EngineStats()

    # -- capacity -------------------------------------------------------------------------

    def _pool_budget(self) -> int:
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return int(free * 0.85)
        return min(CPU_POOL_CAP, int(_available_memory() * 0.3))

    @property
    def capacity_tokens(self) -> int:
        return self.pool.num_blocks * self.block_size

    # -- requests -------------------------------------------------------------------------

    def add_request(self, request: Request) -> Sequence:
        self.check(request)
        seq = Sequence(
            next(self._ids),
            request,
            list(request.prompt_ids),
            _generator(request.params),
            time.perf_counter(),
        )
        self.waiting.append(seq)
        return seq

    def check(self, request: Request) -> None:
        """Raise ValueError (CapacityError) for a request this engine can never serve."""
        if not request.prompt_ids:
            raise ValueError("every request needs at least one prompt token")
        need = len(request.prompt_ids) + request.params.max_tokens
        if need > self.capacity_tokens:
            raise CapacityError(
                f"the prompt ({len(request.prompt_ids)} tokens) plus max_tokens ({request.params.max_tokens}) "
                f"need {need} tokens of KV cache; the pool holds {self.capacity_tokens} "
                f"({self.pool.num_blocks} blocks of {self.block_size}); give the cache more memory or ask for less"
            )

    def abort(self, seq_id: int) -> None:
        """Cancel a request; it finishes as "cancelled" at the next step (thread-safe)."""
        self._aborted.add(seq_id)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def generate(self, requests: list[Request]) -> list[Result]:
        """Run these requests to completion together (continuous batching among themselves)."""
        seqs = [self.add_request(r) for r in requests]
        while any(s.finish is None for s in seqs):
            self.step()
        return [s.result() for s in seqs]

    # -- one step ---------------------------------------------------------------------------

    def step(self) -> list[Sequence]:
        """Schedule, run one forward pass, sample; returns the sequences that finished."""
        finished = self._reap_aborted()
        batch = self._schedule()
        if not batch:
            return finished
        self.stats.steps += 1
        ids, positions, slices = [], [], []
        for seq, n in batch:
            ids.extend(seq.tokens[seq.computed : seq.computed + n])
            positions.append(torch.arange(seq.computed, seq.computed + n))
            slices.append(SeqSlice(seq.state, n))
        input_ids = torch.tensor(ids, device=self.device)
        logits = self.model(input_ids, torch.cat(positions).to(self.device), slices)
        ready = []
        for row, (seq, n) in enumerate(batch):
            decoding = n == 1 and seq.computed >= seq.prompt_len
            self.stats.decode_tokens += n if decoding else 0
            self.stats.prefill_tokens += 0 if decoding else n
            seq.computed += n
            if seq.computed == len(seq.tokens):
                ready.append(row)
            self._register(seq)
        if ready:
            picked = [batch[i][0] for i in ready]
            tokens = sample(logits[ready], [s.request.params for s in picked], [s.generator for s in picked])
            for seq, token in zip(picked, tokens, strict=True):
                if self._accept(seq, token):
                    finished.append(seq)
        for seq in finished:
            self._finish(seq)
        return finished

    def _schedule(self) -> list[tuple[Sequence, int]]:
        batch: list[tuple[Sequence, int]] = []
        budget = self.max_batch_tokens
        for seq in list(self.running):  # decodes first, oldest first
            if seq not in self.running or seq.computed < len(seq.tokens) - 1:
                continue
            if not self._room_for_one(seq):
                continue  # seq itself was preempted
            batch.append((seq, 1))
            budget -= 1
        for seq in self.running:  # prompts being prefilled, in chunks (a last token is a decode above)
            remaining = len(seq.tokens) - seq.computed
            if remaining > 1:
                if budget <= 0:
                    break
                take = min(remaining, budget)
                batch.append((seq, take))
                budget -= take
        while self.waiting and budget > 0 and len(self.running) < self.max_seqs:
            seq = self.waiting[0]
            if not self._admit(seq):
                break
            self.waiting.popleft()
            self.running.append(seq)
            take = min(len(seq.tokens) - seq.computed, budget)
            batch.append((seq, take))
            budget -= take
        return batch

    def _room_for_one(self, seq: Sequence) -> bool:
        """Make sure seq's next token has a slot, preempting the newest others if the pool is full."""
        if seq.computed + 1 <= len(seq.table) * self.block_size:
            return True
        while True:
            try:
                seq.table.append(self.blocks.fresh())
                return True
            except OutOfBlocks:
                victim = self.running[-1]
                self._preempt(victim)
                if victim is seq:
                    return False

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.blocks.release(seq.table)
        seq.state, seq.computed, seq.hashes = None, 0, []
        seq.preemptions += 1
        self.stats.preemptions += 1
        self.waiting.appendleft(seq)

    def _admit(self, seq: Sequence) -> bool:
        """Give seq its blocks: the longest cached prefix (memory, then disk), fresh ones for the rest."""
        tokens, bs = seq.tokens, self.block_size
        limit = (len(tokens) - 1) // bs if self.cache_config.prefix_caching else 0
        digests = self.blocks.chain(tokens[: limit * bs])
        hits = self.blocks.lookup(digests)
        total = -(-len(tokens) // bs)
        if self.blocks.blocks_needed(hits, total) > self.blocks.free:
            if not self.running:  # check() admits only what the whole pool holds: a bug if reached
                raise RuntimeError(f"{total} blocks needed with the pool idle, {self.blocks.free} free")
            return False
        table = [self.blocks.acquire(b) for b in hits]
        disk_blocks = 0
        if self.disk is not None:
            for digest in digests[len(table) :]:
                if not self.disk.path(digest).exists():
                    break
                rows = self.disk.get(digest)
                if rows is None:
                    break
                block = self.blocks.fresh()
                try:
                    self.pool.import_block(block, rows)
                except ValueError:
                    self.blocks.release([block])
                    break
                self.blocks.register(block, digest)
                self._persisted.add(digest)
                table.append(block)
                disk_blocks += 1
        while len(table) < total:
            table.append(self.blocks.fresh())
        cached = (len(hits) + disk_blocks) * bs
        seq.table, seq.computed, seq.hashes = table, cached, digests[: len(hits) + disk_blocks]
        seq.state = self.model.new_state(SeqBlocks(self.pool, seq.table), cached)
        if seq.cached_tokens < 0:  # first admission: what the caller saved
            seq.cached_tokens, seq.disk_tokens = cached, disk_blocks * bs
            self.stats.cached_tokens += cached
            self.stats.disk_tokens += disk_blocks * bs
        return True

    def _register(self, seq: Sequence) -> None:
        """Put seq's newly computed full blocks under their chain hashes."""
        if not self.cache_config.prefix_caching:
            return
        bs = self.block_size
        for k in range(len(seq.hashes), seq.computed // bs):
            previous = seq.hashes[-1] if seq.hashes else self.namespace
            digest = chain_hash(previous, seq.tokens[k * bs : (k + 1) * bs])
            self.blocks.register(seq.table[k], digest)
            seq.hashes.append(digest)

    def _accept(self, seq: Sequence, token: int) -> bool:
        """Append a sampled token; True when the sequence is done."""
        now = time.perf_counter()
        if seq.first_token_at is None:
            seq.first_token_at = now
        seq.tokens.append(token)
        params = seq.request.params
        stop_ids = set(params.stop_token_ids) | (set() if params.ignore_eos else self.eos)
        keep = seq.request.on_token(token) if seq.request.on_token else True
        if token in stop_ids or not keep:
            seq.finish = "stop"
        elif len(seq.generated) >= params.max_tokens:
            seq.finish = "length"
        return seq.finish is not None

    def _reap_aborted(self) -> list[Sequence]:
        if not self._aborted:
            return []
        aborted, self._aborted = self._aborted, set()
        gone = []
        for seq in [*self.running, *self.waiting]:
            if seq.id in aborted and seq.finish is None:
                seq.finish = "cancelled"
                gone.append(seq)
        for seq in gone:
            self._finish(seq)
        return gone

    def fail_all(self, message: str) -> list[Sequence]:
        """End every request with an error (after a failed step); the cache and pool stay usable."""
        failed = [*self.running, *self.waiting]
        for seq in failed:
            seq.finish, seq.error = "error", message
            self._finish(seq)
        return failed

    def _finish(self, seq: Sequence) -> None:
        seq.finished_at = time.perf_counter()
        if seq in self.running:
            self.running.remove(seq)
            if self._writer is not None:
                self._persist(seq)
            self.blocks.release(seq.table)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        seq.state = None

    def _persist(self, seq: Sequence) -> None:
        assert self._writer is not None
        for block, digest in zip(seq.table, seq.hashes, strict=False):
            if digest not in self._persisted:
                self._persisted.add(digest)
                self._writer.put(digest, self.pool.export_block(block))

    def flush(self) -> None:
        """Wait until every finished block queued for the disk tier is written."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _DiskWriter:
    """Writes blocks to the disk tier on a background thread, so finishing a request never waits."""

    def __init__(self, disk: DiskTier) -> None:
        self.disk = disk
        self.queue: queue.Queue[tuple[bytes, dict[str, torch.Tensor]] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="codeagent-kv-writer", daemon=True)
        self.thread.start()
        self.errors: list[str] = []

    def put(self, digest: bytes, rows: dict[str, torch.Tensor]) -> None:
        self.queue.put((digest, rows))

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            try:
                self.disk.put(*item)
            except OSError as err:  # a full or read-only disk costs the cache, never the request
                self.errors.append(str(err))
            finally:
                self.queue.task_done()
        self.queue.task_done()

    def flush(self) -> None:
        self.queue.join()

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _generator(params: SamplingParams) -> torch.Generator | None:
    if params.seed is None:
        return None
    generator = torch.Generator()
    generator.manual_seed(params.seed)
    return generator
