"""The collectives a split model needs, and the control channel its engine steps through.

A ``Group`` is what a model's layers call between their partial results: ``all_reduce`` (sum
the partial outputs of row-split projections, experts and the vocabulary-split embedding)
and ``gather_last`` (the vocabulary-split logits side by side). ``SOLO`` is the group of one
process: every collective returns its input, so the single-process engine pays nothing.

``TorchGroup`` runs them on ``torch.distributed``: the model's collectives on the default
process group (NCCL on GPUs, gloo on CPUs) and the engine's control messages (each step's
plan, pickled, from rank 0) on a separate gloo group, as engines keep a CPU group beside the
device one, so a plan never passes through device memory. Every collective has a deadline
(``timeout``): a rank that died fails the others' next collective with an error instead of
hanging them.

Limits: the plan is a pickled object, sent whole every step (its size grows with the block
tables of the step's sequences: a few kilobytes at 100K-token contexts); the all-reduce of
expert outputs sums partial results where an all-to-all would send each token only to the
ranks holding its experts (less traffic at large batches; the same at decode batch 1).
"""

from __future__ import annotations

import datetime
import os
import time
from typing import Any

import torch
import torch.distributed as dist

from codeagent.backend.distributed.layout import Layout

DEFAULT_TIMEOUT_S = 120.0


class Group:
    """One process: no communication."""

    def __init__(self, layout: Layout | None = None) -> None:
        self.layout = layout or Layout()
        self.failed = False  # a collective failed (a rank is gone): nothing is sent on it again

    @property
    def rank(self) -> int:
        return self.layout.rank

    @property
    def size(self) -> int:
        return self.layout.tp

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """The sum of ``x`` over the ranks (in place where the backend allows)."""
        return x

    def gather_last(self, x: torch.Tensor) -> torch.Tensor:
        """Every rank's ``x`` side by side along the last dimension, in rank order."""
        return x

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (the others pass None)."""
        return obj

    def min_over_ranks(self, count: int) -> int:
        """The smallest of the ranks' ``count`` (on the control channel)."""
        return count

    def close(self) -> None:
        return None


SOLO = Group()


class TorchGroup(Group):
    """``seconds`` and ``calls`` count the time spent in collectives (waiting for the slowest
    rank included): what splitting costs a step, read by ``codeagent bench engine --tp``."""

    def __init__(self, layout: Layout, control: Any) -> None:
        super().__init__(layout)
        self._control = control
        self.seconds, self.calls = 0.0, 0

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        started = time.perf_counter()
        dist.all_reduce(x)
        self._count(started)
        return x

    def gather_last(self, x: torch.Tensor) -> torch.Tensor:
        started = time.perf_counter()
        parts = [torch.empty_like(x) for _ in range(self.size)]
        dist.all_gather(parts, x.contiguous())
        self._count(started)
        return torch.cat(parts, dim=-1)

    def broadcast(self, obj: Any) -> Any:
        started = time.perf_counter()
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self._control)
        self._count(started)
        return box[0]

    def _count(self, started: float) -> None:
        self.seconds += time.perf_counter() - started
        self.calls += 1

    def min_over_ranks(self, count: int) -> int:
        box = torch.tensor([count], dtype=torch.int64)
        dist.all_reduce(box, op=dist.ReduceOp.MIN, group=self._control)
        return int(box.item())

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def join(layout: Layout, device: torch.device, timeout_s: float | None = None) -> TorchGroup:
    """Join the group named by the environment (``MASTER_ADDR``, ``MASTER_PORT``; ``RANK`` and
    ``WORLD_SIZE`` are the layout's), as ``torchrun`` and ``launch.py`` set it up."""
    timeout = datetime.timedelta(
        seconds=timeout_s or float(os.environ.get("CODEAGENT_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend, rank=layout.rank, world_size=layout.tp, timeout=timeout, init_method="env://"
    )
    control = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else dist.group.WORLD
    return TorchGroup(layout, control)
