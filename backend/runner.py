"""The model runner: one scheduled step in, one forward pass and the sampled tokens out.

The only caller of the model's forward. For a step's (sequence, new tokens) pairs it builds
the step's metadata once: the flattened input ids [T] and positions [T], one ``SeqSlice``
per sequence (its decoding state, created over its block table the first time it runs
after an admission), and the ``BlockTables`` that every layer's paged attention reads. Then
it samples the next token of every sequence whose newest token was just computed (a prompt
chunk that is not the prompt's last leaves nothing to sample), each with its own parameters
and generator, through the kernels the model was built with.

Sequences with a grammar (``grammar/``) are masked first: on a GPU their masks are filled on
a worker thread started before the forward pass (the matchers' state depends only on tokens
already sampled), on a CPU after it, and applied to their rows of the logits; each sampled token is then fed to
its sequence's matcher. Free sequences in the same batch are untouched.
"""

from __future__ import annotations

from typing import Any

import torch

from codeagent.backend.cache.paged import KVPool, SeqBlocks
from codeagent.backend.cache.tables import BlockTables
from codeagent.backend.grammar.matcher import StepMasks
from codeagent.backend.layers.sampler import sample
from codeagent.backend.models.base import CausalLM, SeqSlice
from codeagent.backend.scheduler import Scheduled
from codeagent.backend.sequence import Sequence


class ModelRunner:
    def __init__(self, model: CausalLM, pool: KVPool, device: torch.device) -> None:
        self.model, self.pool, self.device = model, pool, device
        # fill grammar masks while the forward runs (on a GPU) or after it (a CPU's cores are busy)
        self.grammar_overlap = self.device.type == "cuda"

    def run(self, batch: Scheduled) -> list[tuple[Sequence, int]]:
        """Compute the batch's new tokens; returns (sequence, sampled token) for those ready to sample."""
        for seq, _ in batch:
            if seq.state is None:
                seq.state = self.model.new_state(SeqBlocks(self.pool, seq.table), seq.computed)
        ready = [row for row, (seq, n) in enumerate(batch) if seq.computed + n == len(seq.tokens)]
        masks = self._start_masks([batch[row][0] for row in ready])
        logits = forward_batch(
            self.model,
            self.pool,
            self.device,
            [
                (seq.state, seq.tokens[seq.computed : seq.computed + n], seq.computed, seq.table)
                for seq, n in batch
            ],
        )  # [N, V]
        if not ready:
            return []
        picked = [batch[row][0] for row in ready]
        params = [seq.request.params for seq in picked]
        # a copy only where needed: masks write into their rows, and logits (made in inference
        # mode) take no in-place writes outside it
        rows = logits if masks is None and len(ready) == logits.shape[0] else logits[ready]
        if masks is not None:
            masks.apply(rows)
        tokens = sample(rows, params, [seq.generator for seq in picked], self.model.kernels)
        for seq, token in zip(picked, tokens, strict=True):
            if seq.matcher is not None and not seq.matcher.consume(token):
                seq.matcher = None  # cannot happen under its own mask; the rest goes unconstrained
        return list(zip(picked, tokens, strict=True))

    def _start_masks(self, ready: list[Sequence]) -> StepMasks | None:
        constrained = [(row, seq.matcher) for row, seq in enumerate(ready) if seq.matcher is not None]
        return StepMasks.start(constrained, self.grammar_overlap)

    def forget(self, seq: Sequence) -> None:
        """``seq`` ended: its decoding state is gone (a split engine's other ranks drop theirs)."""

    def close(self) -> None:
        return None


Entry = tuple[Any, list[int], int, list[int]]  # (decoding state, new tokens, first position, block table)


def forward_batch(model: CausalLM, pool: KVPool, device: torch.device, entries: list[Entry]) -> torch.Tensor:
    """One forward over the sequences' new tokens, flattened, with the step's block tables: [N, V]."""
    ids: list[int] = []
    positions, slices = [], []
    for state, tokens, start, _ in entries:
        ids.extend(tokens)
        positions.append(torch.arange(start, start + len(tokens)))
        slices.append(SeqSlice(state, len(tokens)))
    tables = BlockTables(
        pool.block_size,
        [table for *_, table in entries],
        [start for _, _, start, _ in entries],
        [len(tokens) for _, tokens, _, _ in entries],
    )
    input_ids = torch.tensor(ids, device=device)
    return model.forward(input_ids, torch.cat(positions).to(device), slices, tables)
