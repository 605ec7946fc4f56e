"""The engine: continuous batching over a paged KV pool with prefix caching in memory and on disk.

Requests are token ids plus sampling parameters; the engine knows nothing of text. Each
``step()`` is one loop through four parts, nano-vllm's layout:

- ``scheduler.py`` picks the step's sequences and their token counts: decodes first, then
  prompt chunks, then admissions, under a token budget (chunked prefill), preempting the
  newest sequence when a decode finds no free block;
- ``cache/allocator.py`` gives sequences their blocks: the longest cached prefix (memory,
  then the disk tier), fresh blocks for the rest, registration of computed blocks under
  their chain hashes, persistence of finished ones on a background thread;
- ``runner.py`` builds the step's flattened batch once (ids, positions, slices, block
  tables), runs the model's forward and samples;
- ``sequence.py`` holds each request's state and applies the stop conditions.

A request that could not fit the whole pool even alone is refused when submitted; ``abort``
cancels one at the next step. Results do not depend on the batch: every sequence's
positions, cache rows and sampling generator are its own. DeepSeek-V4's blocks are
multiples of its compression rates, so a block boundary never splits a window, and its
per-block overlap rows carry the compressor state across a resume; Qwen3-Next's per-block
state rows carry its DeltaNet conv and recurrent states the same way.

Threading: one thread drives an engine (``service.py`` runs it in the background for
servers and shared clients); ``generate`` is the synchronous front for one caller.
"""

from __future__ import annotations

import itertools
import time
from collections import deque

import torch

from codeagent.backend.cache.allocator import BlockAllocator, CacheConfig
from codeagent.backend.cache.blocks import BlockManager
from codeagent.backend.cache.disk import DiskTier
from codeagent.backend.cache.paged import KVPool
from codeagent.backend.distributed.group import SOLO, Group
from codeagent.backend.distributed.lead import lead
from codeagent.backend.models.base import CausalLM
from codeagent.backend.runner import ModelRunner
from codeagent.backend.scheduler import EngineStats, Scheduler
from codeagent.backend.sequence import Request, Result, Sequence

__all__ = ["CacheConfig", "CapacityError", "Engine", "EngineStats", "Request", "Result", "Sequence"]


class CapacityError(ValueError):
    """A request the KV pool could not hold even alone."""


class Engine:
    def __init__(
        self,
        model: CausalLM,
        eos_token_ids: set[int],
        device: str | torch.device = "cpu",
        cache: CacheConfig | None = None,
        max_batch_tokens: int = 2048,
        max_seqs: int = 64,
        namespace: bytes = b"",
        group: Group = SOLO,
    ) -> None:
        self.model = model
        self.eos = frozenset(eos_token_ids)
        self.device = torch.device(device)
        cache = cache or CacheConfig()
        self.block_size = cache.block_tokens(model.block_multiple)
        streams = model.cache_streams(self.block_size)
        if group.size > 1:  # the layout joins the cache's name: another layout's blocks hold other rows
            namespace += f"|tp{group.layout.tp}{'ep' if group.layout.ep else ''}".encode()
        subfolder = f"rank{group.rank}" if group.size > 1 else ""
        self.allocator = BlockAllocator(
            streams, cache, self.block_size, self.device, namespace, subfolder, model.resumes_from_blocks
        )
        self.stats = EngineStats()
        self.scheduler = Scheduler(self.allocator, max_batch_tokens, max_seqs, self.stats)
        self.runner = (
            ModelRunner(model, self.allocator.pool, self.device)
            if group.size == 1
            else lead(model, self.allocator, cache, self.device, group)
        )
        self._ids = itertools.count()
        self._aborted: set[int] = set()

    @property
    def pool(self) -> KVPool:
        return self.allocator.pool

    @property
    def blocks(self) -> BlockManager:
        return self.allocator.blocks

    @property
    def disk(self) -> DiskTier | None:
        return self.allocator.disk

    @property
    def block_bytes(self) -> int:
        return self.allocator.block_bytes

    @property
    def waiting(self) -> deque[Sequence]:
        return self.scheduler.waiting

    @property
    def running(self) -> list[Sequence]:
        return self.scheduler.running

    @property
    def capacity_tokens(self) -> int:
        return self.pool.num_blocks * self.block_size

    # -- requests -------------------------------------------------------------------------

    def add_request(self, request: Request) -> Sequence:
        self.check(request)
        seq = Sequence.start(next(self._ids), request, self.eos)
        self.scheduler.add(seq)
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
        return self.scheduler.has_work()

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
        batch = self.scheduler.schedule()
        if not batch:
            return finished
        self.stats.steps += 1
        sampled = self.runner.run(batch)
        for seq, n in batch:
            decoding = n == 1 and seq.computed >= seq.prompt_len
            self.stats.decode_tokens += n if decoding else 0
            self.stats.prefill_tokens += 0 if decoding else n
            seq.computed += n
            self.allocator.register(seq)
        finished += [seq for seq, token in sampled if seq.append(token)]
        for seq in finished:
            self._finish(seq)
        return finished

    def _reap_aborted(self) -> list[Sequence]:
        if not self._aborted:
            return []
        aborted, self._aborted = self._aborted, set()
        gone = [s for s in [*self.running, *self.waiting] if s.id in aborted and s.finish is None]
        for seq in gone:
            seq.finish = "cancelled"
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
        self.scheduler.finish(seq)
        self.runner.forget(seq)

    def flush(self) -> None:
        """Wait until every finished block queued for the disk tier is written."""
        self.allocator.flush()

    def close(self) -> None:
        self.runner.close()
        self.allocator.close()
