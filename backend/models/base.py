"""The contract every model family meets, so the engine drives them all the same way.

A forward pass takes a *flattened* batch, as paged-attention engines do: the new tokens of
every sequence concatenated (``input_ids [T]``, ``positions [T]``), plus one ``SeqSlice`` per
sequence saying how many of those tokens are its own and which per-sequence decoding state
(cache) it continues. Prefill and decode are the same call: a prefill slice has many new
tokens, a decode slice one. The model appends what the new tokens leave behind to each
state (KV rows for Qwen3; window rows, compressed entries, indexer keys and pending
compressor state for DeepSeek-V4) and returns the logits of each sequence's last token.

A state reads and writes its rows through the ``Rows`` streams of ``cache/paged.py``:
``new_state()`` alone gives private growing tensors (tests, one-off use);
``new_state(SeqBlocks, cached_tokens)`` gives rows in the engine's paged pool, continuing
a cached prefix. ``cache_streams(block_size)`` tells the engine what a block of tokens
leaves in the pool, and ``block_multiple`` what block sizes the model's state allows.
``resumes_from_blocks`` False (state no block holds: Qwen3-Next built without its per-block
saved recurrent states) keeps the engine from starting a sequence on cached blocks.

The engine's runner (``runner.py``), the only caller of ``forward`` in the engine, also
passes the step's ``BlockTables`` (``cache/tables.py``): where each sequence's rows are in
the pool, built once per step and handed down to every layer's paged attention. Called
without it (standalone states), every layer reads its rows through the states themselves.

``kernels`` is the model's choice of implementations (``kernels/dispatch.py``), made once
when it is built (from ``CODEAGENT_KERNELS`` unless given) and replaceable as a whole. A
forward bundles it with the sequences' sizes and the block tables in a ``Step`` that its
layers read, so no layer looks anything up per call. ``CausalLMModule`` is that frame,
shared by the families: each implements ``logits(input_ids, positions, seqs, step)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from codeagent.backend.cache.paged import KVStream, SeqBlocks
from codeagent.backend.cache.tables import BlockTables
from codeagent.backend.kernels.dispatch import Kernels, choose


@dataclass(slots=True)
class SeqSlice:
    """One sequence's share of a flattened batch."""

    state: Any  # what the model's new_state() returned for this sequence
    num_tokens: int  # how many of the batch's tokens are this sequence's new tokens


@dataclass(slots=True)
class Step:
    """What every layer of one forward reads besides its input, built once by the forward."""

    kernels: Kernels
    sizes: list[int]  # [N] new tokens per sequence
    tables: BlockTables | None  # the runner's; None for standalone states


class CausalLM(Protocol):
    config: Any  # the family's own config dataclass

    kernels: Kernels  # chosen when the model is built

    block_multiple: int  # block sizes must be multiples of this

    resumes_from_blocks: bool  # whether a sequence may start from cached blocks (False: state outside them)

    def cache_streams(self, block_size: int) -> list[KVStream]:
        """The pool's row streams: what a block of ``block_size`` tokens leaves behind."""
        ...

    def new_state(self, paged: SeqBlocks | None = None, cached_tokens: int = 0) -> Any:
        """A decoding state for one sequence: standalone, or over its blocks after ``cached_tokens``."""
        ...

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        seqs: list[SeqSlice],
        tables: BlockTables | None = None,
    ) -> torch.Tensor:
        """input_ids, positions: [T] (T = sum of num_tokens); tables: the runner's, in the order of
        ``seqs``. Returns logits [len(seqs), vocab] in float32."""
        ...

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Take (checkpoint key, tensor) pairs, in any of the family's key spellings; quantized
        weights (FP8/FP4 with their scales, see ``quant.py``) are dequantized here, except
        DeepSeek-V4's routed experts, which stay packed (``packed_weights.PackedExperts``)."""
        ...


class CausalLMModule(nn.Module):
    """The frame every family's model is built on: its kernels chosen when it is built, and a
    ``forward`` that bundles them with the step's sizes and tables into the ``Step`` its layers
    read, then hands over to the family's ``logits``."""

    resumes_from_blocks = True  # a family whose state the blocks do not hold says False

    def __init__(self, config: Any, device: Any, kernels: Kernels | None) -> None:
        super().__init__()
        self.config = config
        self.kernels = kernels if kernels is not None else choose(device)

    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        seqs: list[SeqSlice],
        tables: BlockTables | None = None,
    ) -> torch.Tensor:
        return self.logits(
            input_ids, positions, seqs, Step(self.kernels, [s.num_tokens for s in seqs], tables)
        )

    def logits(
        self, input_ids: torch.Tensor, positions: torch.Tensor, seqs: list[SeqSlice], step: Step
    ) -> torch.Tensor:
        """The family's forward: logits [len(seqs), vocab] in float32 (see ``CausalLM.forward``)."""
        raise NotImplementedError


def last_rows(step: Step, device: torch.device) -> torch.Tensor:
    """The index of each sequence's last new token in the flattened batch: [N]."""
    return torch.cumsum(torch.tensor(step.sizes, device=device), 0) - 1


def split(tensor: torch.Tensor, seqs: list[SeqSlice]) -> list[torch.Tensor]:
    """Per-sequence views of a [T, ...] tensor."""
    return list(torch.split(tensor, [s.num_tokens for s in seqs], dim=0))
