"""A split engine: rank 0 schedules and its runner sends each step; the other ranks follow.

``LeaderRunner`` is rank 0's ``ModelRunner``: before each forward it sends the step's
``Plan`` (``messages.py``) with what changed since the last (ended sequences, disk moves),
then runs its own share of the forward and samples (the logits are gathered whole on every
rank; only rank 0 samples). It is also the allocator's ``DiskMirror``: a disk hit is first
probed on every rank, and each import or export is replayed on the others in order.

``follow`` is the loop of every other rank: it builds a pool of the size rank 0 chose over
its own share of each block's rows, keeps a decoding state per sequence over its own copy
of the block tables, and runs the same forward on every plan. Because the pools are the
same size, fed the same tokens into the same blocks, a block rank 0 finds in its prefix
cache holds the matching rows on every rank: a memory hit costs the others nothing.

A failed collective (a rank died, or did not answer within the group's deadline) raises
``GroupFailed`` on rank 0; the service fails what is in flight and stops, and the server
exits non-zero. A follower that loses rank 0 exits non-zero too.
"""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
from typing import Any

import torch

from codeagent.backend.cache.disk import DiskTier, DiskWriter
from codeagent.backend.cache.paged import KVPool, SeqBlocks
from codeagent.backend.distributed.group import Group
from codeagent.backend.distributed.messages import DiskOp, Plan, Probe, Setup, Stop, Work
from codeagent.backend.models.base import CausalLM
from codeagent.backend.runner import ModelRunner, forward_batch
from codeagent.backend.scheduler import Scheduled
from codeagent.backend.sequence import Sequence


class GroupFailed(RuntimeError):
    """A rank of the split engine is gone; nothing more can be computed."""


def rank_folder(root: str | None, namespace: bytes, rank: int) -> Path | None:
    return None if root is None else Path(root) / namespace.hex()[:32] / f"rank{rank}"


class LeaderRunner(ModelRunner):
    def __init__(self, model: CausalLM, pool: KVPool, device: torch.device, group: Group) -> None:
        super().__init__(model, pool, device)
        self.group = group
        self._ended: list[int] = []
        self._disk: list[DiskOp] = []
        self._closed = False
        self.own_disk: DiskTier | None = None  # the allocator's, to answer probes for rank 0

    def setup(self, setup: Setup) -> None:
        self._send(setup)

    def run(self, batch: Scheduled) -> list[tuple[Sequence, int]]:
        work = [
            Work(
                seq.id,
                seq.tokens[seq.computed : seq.computed + n],
                seq.computed,
                list(seq.table),
                seq.state is None,
            )
            for seq, n in batch
        ]
        plan = Plan(work, self._ended, self._disk)
        self._ended, self._disk = [], []
        self._send(plan)
        try:
            return super().run(batch)
        except RuntimeError as err:
            raise self._failed(f"a step across {self.group.size} ranks failed: {err}") from err

    def forget(self, seq: Sequence) -> None:
        self._ended.append(seq.id)

    # -- the allocator's DiskMirror -------------------------------------------------------

    def on_disk(self, digests: list[bytes]) -> int:
        self._send(Probe(digests))
        return self._min(readable(self.own_disk, digests))

    def moved(self, kind: str, block: int, digest: bytes) -> None:
        self._disk.append(DiskOp(kind, block, digest))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if not self.group.failed:
                with contextlib.suppress(GroupFailed):
                    self._send(Stop(self._disk))

    def _send(self, message: Any) -> None:
        try:
            self.group.broadcast(message)
        except RuntimeError as err:
            raise self._failed(f"lost a rank of the {self.group.size}-rank group: {err}") from err

    def _min(self, count: int) -> int:
        try:
            return self.group.min_over_ranks(count)
        except RuntimeError as err:
            raise self._failed(f"lost a rank of the {self.group.size}-rank group: {err}") from err

    def _failed(self, why: str) -> GroupFailed:
        """The failure to raise; the group is marked failed so nothing talks to it again."""
        self.group.failed = True
        return GroupFailed(why)


def readable(disk: DiskTier | None, digests: list[bytes]) -> int:
    """How many leading blocks of ``digests`` this rank's disk tier holds."""
    if disk is None:
        return 0
    return sum(1 for _ in itertools.takewhile(lambda d: disk.path(d).exists(), digests))


def follow(model: CausalLM, group: Group, device: torch.device) -> None:
    """A follower rank's life: set up as rank 0 says, then run every plan until Stop."""
    setup = group.broadcast(None)
    assert isinstance(setup, Setup), f"expected the setup first, got {type(setup).__name__}"
    pool = KVPool(model.cache_streams(setup.block_size), setup.block_size, setup.num_blocks, device)
    folder = rank_folder(setup.disk_folder, setup.namespace, group.rank)
    disk = DiskTier(folder, setup.disk_max_bytes) if folder is not None else None
    writer = DiskWriter(disk) if disk is not None else None
    states: dict[int, Any] = {}
    tables: dict[int, list[int]] = {}
    try:
        while True:
            message = group.broadcast(None)
            if isinstance(message, Probe):
                group.min_over_ranks(readable(disk, message.digests))
                continue
            _move(message.disk, pool, disk, writer)
            if isinstance(message, Stop):
                return
            for seq_id in message.ended:
                states.pop(seq_id, None)
                tables.pop(seq_id, None)
            entries = []
            for work in message.work:
                table = tables.setdefault(work.seq_id, [])
                table[:] = work.table
                if work.fresh or work.seq_id not in states:
                    states[work.seq_id] = model.new_state(SeqBlocks(pool, table), work.start)
                entries.append((states[work.seq_id], work.tokens, work.start, table))
            forward_batch(model, pool, device, entries)
    finally:
        if writer is not None:
            writer.close()


def _move(ops: list[DiskOp], pool: KVPool, disk: DiskTier | None, writer: DiskWriter | None) -> None:
    for op in ops:
        if disk is None or writer is None:
            raise GroupFailed("rank 0 moved blocks to or from a disk tier this rank does not have")
        if op.kind == "export":
            writer.put(op.digest, pool.export_block(op.block))
            continue
        rows = disk.get(op.digest)
        if rows is None:
            raise GroupFailed(f"block {op.digest.hex()[:12]} vanished from this rank's disk tier")
        pool.import_block(op.block, rows)
