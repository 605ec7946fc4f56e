"""The embedding and LM head split by vocabulary rows (``Layout.vocab``), for every family.

A rank holds rows ``[first, first + rows)`` of both tables, ``ceil(V / tp)`` of them except
on the last rank, whose share may be shorter. ``embed`` looks up the ids this rank holds,
zeroes the others' rows and all-reduces, so every rank gets every token's embedding (one
rank contributes each row, the others add zeros: the sum is exact). ``gather`` pads this
rank's logits to the common share and puts every rank's side by side, cut back to V.

In one process (``SOLO``) both are the plain lookup and the logits as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from codeagent.backend.distributed.group import Group


@dataclass(frozen=True, slots=True)
class VocabShare:
    first: int  # this rank's first row
    share: int  # ceil(V / tp): every rank's logits are padded to this many
    vocab: int  # V

    @classmethod
    def of(cls, group: Group, vocab: int) -> VocabShare:
        rows = group.layout.vocab(vocab)
        return cls(rows.start, -(-vocab // group.layout.tp), vocab)

    def rows(self, group: Group) -> int:
        """How many rows this rank holds."""
        return group.layout.vocab(self.vocab).stop - self.first


def embed(table: torch.Tensor, ids: torch.Tensor, part: VocabShare, group: Group) -> torch.Tensor:
    """table [rows, D] (this rank's), ids [T] -> [T, D], every token's embedding on every rank."""
    if group.size == 1:
        return table[ids]
    local = ids - part.first
    mine = (local >= 0) & (local < table.shape[0])
    x = table[local.clamp(0, table.shape[0] - 1)] * mine[:, None].to(table.dtype)
    return group.all_reduce(x)


def gather(logits: torch.Tensor, part: VocabShare, group: Group) -> torch.Tensor:
    """This rank's logits [N, rows] -> every rank's side by side [N, V] (the last share padded)."""
    if group.size == 1:
        return logits
    pad = part.share - logits.shape[1]
    if pad:
        logits = F.pad(logits, (0, pad))
    return group.gather_last(logits)[:, : part.vocab]
