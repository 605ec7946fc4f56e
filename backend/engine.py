"""Generation over token ids: prefill every request, then decode them together.

The engine knows nothing of text: requests are token ids and sampling parameters; token
stop conditions (end-of-sequence ids, ``stop_token_ids``, ``max_tokens``) end a sequence,
and the caller's ``on_token`` may end one early (stop strings, cancellation) by returning
False. Each step is one forward pass over the flattened batch of every live sequence, so
each new token costs one step, not a re-run of the prompt.

What is left for the engine issue: a scheduler admitting requests while others decode
(continuous batching), chunked prefill under a token budget, a paged KV cache with prefix
reuse, preemption. This module keeps the request/result shapes those will keep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from codeagent.backend.layers.sampler import SamplingParams, sample
from codeagent.backend.models.base import SeqSlice

TokenHook = Callable[[int], bool]  # new token id -> keep going?


@dataclass(slots=True)
class Request:
    prompt_ids: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    on_token: TokenHook | None = None


@dataclass(slots=True)
class Result:
    token_ids: list[int]
    finish_reason: str  # "stop" (eos, stop id, caller) or "length"
    prompt_tokens: int
    prefill_s: float = 0.0
    decode_s: float = 0.0


@dataclass(slots=True)
class _Live:
    request: Request
    state: Any
    generator: torch.Generator | None
    tokens: list[int] = field(default_factory=list)
    finish: str | None = None


class Engine:
    def __init__(self, model: Any, eos_token_ids: set[int], device: str | torch.device = "cpu") -> None:
        self.model = model
        self.eos = set(eos_token_ids)
        self.device = torch.device(device)

    def generate(self, requests: list[Request]) -> list[Result]:
        if any(not r.prompt_ids for r in requests):
            raise ValueError("every request needs at least one prompt token")
        live = [_Live(r, self.model.new_state(), _generator(r.params)) for r in requests]
        started = time.perf_counter()
        first = self._step(live, [r.prompt_ids for r in requests], [0] * len(live))
        prefill_s = time.perf_counter() - started
        self._accept(live, first)
        while active := [s for s in live if s.finish is None]:
            last = [[s.tokens[-1]] for s in active]
            starts = [len(s.request.prompt_ids) + len(s.tokens) - 1 for s in active]
            self._accept(active, self._step(active, last, starts))
        decode_s = time.perf_counter() - started - prefill_s
        return [
            Result(s.tokens, s.finish or "stop", len(s.request.prompt_ids), prefill_s, decode_s) for s in live
        ]

    def _step(self, seqs: list[_Live], chunks: list[list[int]], starts: list[int]) -> list[int]:
        ids = torch.tensor([t for chunk in chunks for t in chunk], device=self.device)
        positions = torch.cat(
            [torch.arange(s, s + len(c), device=self.device) for s, c in zip(starts, chunks, strict=True)]
        )
        slices = [SeqSlice(s.state, len(c)) for s, c in zip(seqs, chunks, strict=True)]
        logits = self.model(ids, positions, slices)
        return sample(logits, [s.request.params for s in seqs], [s.generator for s in seqs])

    def _accept(self, seqs: list[_Live], tokens: list[int]) -> None:
        for seq, token in zip(seqs, tokens, strict=True):
            seq.tokens.append(token)
            params = seq.request.params
            stop_ids = set(params.stop_token_ids) | (set() if params.ignore_eos else self.eos)
            keep = seq.request.on_token(token) if seq.request.on_token else True
            if token in stop_ids or not keep:
                seq.finish = "stop"
            elif len(seq.tokens) >= params.max_tokens:
                seq.finish = "length"


def _generator(params: SamplingParams) -> torch.Generator | None:
    if params.seed is None:
        return None
    generator = torch.Generator()
    generator.manual_seed(params.seed)
    return generator
