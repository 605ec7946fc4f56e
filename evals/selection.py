"""Which tasks a run takes: a shard of the set, then at most ``limit`` of them.

``--shard I/N`` (1-based, ``1 <= I <= N``) sorts the tasks by instance id and deals them out
round-robin: the k-th task goes to shard ``k mod N + 1``. Every machine computes the same
split from the same set, the shards are disjoint, cover the set, and differ in size by at
most one task. Adding a task moves the tasks sorted after it to other shards; results are
per task, so that does not matter for merging.
"""

from __future__ import annotations

import re

from codeagent.evals.task import Task

SHARD = re.compile(r"^(\d+)/(\d+)$")


class SelectionError(ValueError):
    """A shard spec or limit that makes no sense."""


def parse_shard(text: str) -> tuple[int, int]:
    match = SHARD.match(text.strip())
    if not match:
        raise SelectionError(f"--shard takes I/N, like 2/4, not {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise SelectionError(f"--shard {text}: I must be between 1 and N (N >= 1)")
    return index, count


def select(tasks: list[Task], shard: tuple[int, int] | None = None, limit: int | None = None) -> list[Task]:
    chosen = sorted(tasks, key=lambda task: task.instance_id)
    if shard is not None:
        index, count = shard
        chosen = chosen[index - 1 :: count]
    return chosen[:limit] if limit is not None else chosen
