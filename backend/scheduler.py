"""The scheduler: which sequences take part in the next step, and how many tokens each computes.

Continuous batching under a token budget per step (chunked prefill): sequences decoding
(one token each) go first, oldest first; then the prompts being prefilled continue in
chunks; then waiting requests are admitted in arrival order while the budget, the sequence
limit and the free blocks allow, each with the longest cached prefix of its tokens
(``cache/allocator.py``). So a long prompt never stalls the others' decoding, and new
requests join while others decode.

Shared prompts are computed once: each admitted sequence claims the full prompt blocks it
computes itself (by chain hash), and a waiting sequence whose first uncached block another
running sequence has claimed is held (later arrivals may pass it) until that block is
registered; it is then admitted with a hit on everything computed so far, and held again if
the next block is still being computed. So N requests with one prompt arriving at once (the
attempts of ``codeagent fix --attempts N``) prefill it once: the first computes it, the
others wait for it, then compute only their own tail and decode in the same batches. The
partial last block is not shared (``cache/blocks.py`` shares only full blocks), so each of
them recomputes at most one block of the shared prompt. A claim ends when its sequence
finishes or is preempted, so a held sequence never waits on one that is gone.

When a decoding sequence needs a block and none is free, the newest running sequence is
preempted: its blocks are released (still cached, so it usually re-admits with a prefix
hit) and it goes back to the front of the queue to be recomputed. The engine refuses a
request that could not fit the whole pool even alone, so an admission that fails with
nothing running is a bug, raised as such.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from codeagent.backend.cache.allocator import BlockAllocator
from codeagent.backend.sequence import Sequence

Scheduled = list[tuple[Sequence, int]]  # (sequence, tokens it computes this step), in batch order


@dataclass
class EngineStats:
    steps: int = 0
    prefill_tokens: int = 0  # computed, not served from cache
    decode_tokens: int = 0
    cached_tokens: int = 0
    disk_tokens: int = 0
    preemptions: int = 0


class Scheduler:
    def __init__(
        self, allocator: BlockAllocator, max_batch_tokens: int, max_seqs: int, stats: EngineStats
    ) -> None:
        if max_batch_tokens < 1 or max_seqs < 1:
            raise ValueError("max_batch_tokens and max_seqs must be positive")
        self.allocator, self.stats = allocator, stats
        self.max_batch_tokens, self.max_seqs = max_batch_tokens, max_seqs
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.claims: dict[bytes, Sequence] = {}  # prompt blocks being computed -> by which sequence
        self.claimed: dict[Sequence, list[bytes]] = {}

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> Scheduled:
        batch: Scheduled = []
        budget = self._decodes(batch, self.max_batch_tokens)
        budget = self._prefill_chunks(batch, budget)
        self._admit(batch, budget)
        return batch

    def _decodes(self, batch: Scheduled, budget: int) -> int:
        for seq in list(self.running):  # oldest first
            if seq not in self.running or seq.computed < len(seq.tokens) - 1:
                continue
            if not self._room_for_one(seq):
                continue  # seq itself was preempted
            batch.append((seq, 1))
            budget -= 1
        return budget

    def _prefill_chunks(self, batch: Scheduled, budget: int) -> int:
        for seq in self.running:  # a prompt's last token is a decode above
            remaining = len(seq.tokens) - seq.computed
            if remaining > 1:
                if budget <= 0:
                    break
                take = min(remaining, budget)
                batch.append((seq, take))
                budget -= take
        return budget

    def _admit(self, batch: Scheduled, budget: int) -> None:
        held: list[Sequence] = []
        while self.waiting and budget > 0 and len(self.running) < self.max_seqs:
            seq = self.waiting.popleft()
            if self._computed_by_another(seq):
                held.append(seq)
                continue
            admission = self.allocator.allocate(seq)
            if admission is None:
                self.waiting.appendleft(seq)
                if not self.running:  # the engine admits only what the whole pool holds
                    raise RuntimeError(
                        f"{self.allocator.blocks_for(seq)} blocks needed with the pool idle, "
                        f"{self.allocator.blocks.free} free"
                    )
                break
            if seq.cached_tokens < 0:  # first admission: what the caller saved
                seq.cached_tokens, seq.disk_tokens = admission.cached, admission.from_disk
                self.stats.cached_tokens += admission.cached
                self.stats.disk_tokens += admission.from_disk
            self._claim(seq, admission.computing)
            self.running.append(seq)
            take = min(len(seq.tokens) - seq.computed, budget)
            batch.append((seq, take))
            budget -= take
        self.waiting.extendleft(reversed(held))  # back in their places, ahead of later arrivals

    def _computed_by_another(self, seq: Sequence) -> bool:
        """Whether a running sequence is computing the first block seq could not hit now."""
        if not self.claims:
            return False
        missing = self.allocator.first_missing(seq)
        return missing is not None and self.claims.get(missing, seq) is not seq

    def _claim(self, seq: Sequence, digests: list[bytes]) -> None:
        mine = [digest for digest in digests if self.claims.setdefault(digest, seq) is seq]
        if mine:
            self.claimed[seq] = mine

    def _unclaim(self, seq: Sequence) -> None:
        for digest in self.claimed.pop(seq, []):
            del self.claims[digest]

    def _room_for_one(self, seq: Sequence) -> bool:
        """Make sure seq's next token has a slot, preempting the newest others if the pool is full."""
        while not self.allocator.may_append(seq):
            victim = self.running[-1]
            self._preempt(victim)
            if victim is seq:
                return False
        return True

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self._unclaim(seq)
        self.allocator.free(seq, persist=False)
        seq.reset()
        self.stats.preemptions += 1
        self.waiting.appendleft(seq)

    def finish(self, seq: Sequence) -> None:
        """Take a finished sequence out of the queues; its blocks stay cached (and go to disk)."""
        if seq in self.running:
            self.running.remove(seq)
            self._unclaim(seq)
            self.allocator.free(seq, persist=True)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        seq.state = None
