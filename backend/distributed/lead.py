"""Rank 0's side of a split engine, wired into its allocator (imported by ``engine.py``)."""

from __future__ import annotations

import torch

from codeagent.backend.cache.allocator import BlockAllocator, CacheConfig
from codeagent.backend.distributed.group import Group
from codeagent.backend.distributed.messages import Setup
from codeagent.backend.distributed.runner import LeaderRunner
from codeagent.backend.models.base import CausalLM


def lead(
    model: CausalLM, allocator: BlockAllocator, cache: CacheConfig, device: torch.device, group: Group
) -> LeaderRunner:
    """The leader's runner: tells the followers the pool's geometry and mirrors the disk tier."""
    runner = LeaderRunner(model, allocator.pool, device, group)
    runner.own_disk = allocator.disk
    allocator.mirror = runner
    folder = None if cache.disk_folder is None else str(cache.disk_folder)
    runner.setup(
        Setup(
            allocator.block_size, allocator.pool.num_blocks, allocator.namespace, folder, cache.disk_max_bytes
        )
    )
    return runner
