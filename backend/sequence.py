"""A request's state through the engine: what was asked, what has been computed, how it ended.

``Request`` is what a caller submits: prompt token ids, sampling parameters and an optional
hook called with every new token (returning False stops the sequence: stop strings,
client-side logic). ``Sequence`` is the engine's record of one request: its tokens (prompt
then generated; after a preemption all of them are recomputed, never truncated), its block
table and the chain hashes of its registered blocks, how many leading tokens have their
state in the pool, the model's decoding state over its blocks, timings and how it finished.
``Result`` is what the caller gets back.

Stop conditions (``Sequence.append``): end-of-sequence ids (unless ``ignore_eos``),
``stop_token_ids``, ``max_tokens``, and the hook. Each sequence samples with its own
generator (seeded from ``SamplingParams.seed``), so its tokens do not depend on the batch.
A sequence whose parameters carry a grammar holds its own matcher, fed every sampled token
by the runner; a preemption keeps it (generated tokens are recomputed, not resampled).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from codeagent.backend.layers.sampler import SamplingParams

TokenHook = Callable[[int], bool]  # new token id -> keep going?


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


@dataclass(eq=False)
class Sequence:
    id: int
    request: Request
    tokens: list[int]  # prompt + generated; after a preemption all of it is recomputed
    generator: torch.Generator | None
    arrived: float
    stop_ids: frozenset[int] = frozenset()  # sampled ids that end it (eos unless ignored, stop ids)
    table: list[int] = field(default_factory=list)  # block ids, in order
    state: Any = None  # the model's new_state() over the blocks; None until the runner first needs it
    computed: int = 0  # leading tokens whose state is in the pool
    hashes: list[bytes] = field(default_factory=list)  # chain of the registered full blocks
    cached_tokens: int = -1  # set at first admission
    disk_tokens: int = 0
    first_token_at: float | None = None
    finished_at: float | None = None
    finish: str | None = None
    error: str | None = None
    preemptions: int = 0
    matcher: Any = None  # the grammar's parse of the generated tokens (``grammar/matcher.py``)

    @classmethod
    def start(cls, seq_id: int, request: Request, eos: frozenset[int]) -> Sequence:
        params = request.params
        stop_ids = frozenset(params.stop_token_ids) | (frozenset() if params.ignore_eos else eos)
        seq = cls(
            seq_id, request, list(request.prompt_ids), _generator(params), time.perf_counter(), stop_ids
        )
        seq.matcher = params.grammar.matcher() if params.grammar is not None else None
        return seq

    @property
    def prompt_len(self) -> int:
        return len(self.request.prompt_ids)

    @property
    def generated(self) -> list[int]:
        return self.tokens[self.prompt_len :]

    def append(self, token: int) -> bool:
        """Add a sampled token; True when the sequence is done."""
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.tokens.append(token)
        keep = self.request.on_token(token) if self.request.on_token else True
        if token in self.stop_ids or not keep:
            self.finish = "stop"
        elif len(self.tokens) - self.prompt_len >= self.request.params.max_tokens:
            self.finish = "length"
        return self.finish is not None

    def reset(self) -> None:
        """Forget what the pool held for it (preempted): everything is computed again."""
        self.state, self.computed, self.hashes = None, 0, []
        self.preemptions += 1

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


def _generator(params: SamplingParams) -> torch.Generator | None:
    if params.seed is None:
        return None
    generator = torch.Generator()
    generator.manual_seed(params.seed)
    return generator
