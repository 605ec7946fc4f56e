"""Sampling the next token: greedy, temperature, top-k, top-p, min-p, with a seeded generator.

Operates on float32 logits [N, V], one row per sequence, each with its own parameters.
With Triton (``kernels/sampling``) one launch samples every row on the device: same
distributions, but seeded draws differ from ``torch.multinomial``'s.
Temperature 0 is greedy (argmax, ties to the lowest id, like the references). A grammar in
the parameters is applied by the runner (``runner.py``) before these functions see the logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from codeagent.backend.kernels.dispatch import REFERENCE, Kernels


class Constraint(Protocol):
    """A compiled grammar (``grammar.matcher.Grammar``): each sequence gets its own matcher."""

    def matcher(self) -> Any: ...


@dataclass(slots=True)
class SamplingParams:
    temperature: float = 0.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0
    min_p: float = 0.0
    max_tokens: int = 256
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    grammar: Constraint | None = None  # the reply's grammar: logits are masked to it before sampling

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if not 0 <= self.min_p < 1:
            raise ValueError("min_p must be in [0, 1)")
        if self.top_k < 0 or self.max_tokens < 1:
            raise ValueError("top_k must be >= 0 and max_tokens >= 1")


def filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """One row of logits [V] scaled and masked by the parameters (masked entries -inf)."""
    logits = logits / params.temperature
    if params.top_k and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if params.min_p > 0:
        logits = logits.masked_fill(probs < params.min_p * probs.max(), float("-inf"))
    if params.top_p < 1:
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        drop = cumulative - sorted_probs > params.top_p  # keep the smallest prefix reaching top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return logits


def sample(
    logits: torch.Tensor,
    params: list[SamplingParams],
    generators: list[torch.Generator | None],
    kernels: Kernels = REFERENCE,
) -> list[int]:
    """logits [N, V] float32 -> one token id per row."""
    if kernels.triton is not None:
        return kernels.triton.sample(logits, params, generators)
    out = []
    greedy = greedy_tokens(logits) if any(p.temperature == 0 for p in params) else []
    for index, (row, p, generator) in enumerate(zip(logits, params, generators, strict=True)):
        if p.temperature == 0:
            out.append(greedy[index])
            continue
        probs = torch.softmax(filter_logits(row, p), dim=-1)
        out.append(int(torch.multinomial(probs, 1, generator=generator)))
    return out


def greedy_tokens(logits: torch.Tensor) -> list[int]:
    """Each row's argmax (the first of equal maxima, a NaN above all, as ``torch.argmax``): on
    CPU through NumPy, whose vectorised argmax takes 7 us over 151,936 float32 logits where
    torch's takes 85 (a batch-1 decode step's share: ``docs/bench/cpu-choices.md``)."""
    if logits.device.type == "cpu" and logits.dtype == torch.float32 and not logits.requires_grad:
        return logits.numpy().argmax(axis=-1).tolist()
    return torch.argmax(logits, dim=-1).tolist()
