"""The machine's memory bandwidth, measured in the bench's own run: the roofline's denominator.

A streaming read: ``torch.sum`` over a float32 buffer much larger than any cache (2 GiB by
default), on torch's threads (the bench's), the best of ``repeats``; the buffer is written
once first, so its pages are resident and the sum reads memory, not page faults. The best
rather than the median, since the roofline is what the memory can deliver, and neighbours
on a shared host only ever lower it.

``cpu_seconds`` and ``others`` count the CPU time other processes took during the run (from
``/proc/stat`` less this process's and its children's): on a shared machine, figures taken
while others ran are suspect, and the JSON says how much they ran.

Limits: one reader pattern (sequential, all threads): a decode step's reads are large
contiguous weight blocks too, so this is the ceiling they can hope for; it is not a STREAM
triad, which counts writes as well.
"""

from __future__ import annotations

import os
import resource
import time

import torch


def read_bandwidth(size_bytes: int = 2 << 30, repeats: int = 5) -> float:
    """Bytes per second of a streaming read of ``size_bytes``."""
    buffer = torch.ones(size_bytes // 4, dtype=torch.float32)
    buffer.sum()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        buffer.sum()
        best = min(best, time.perf_counter() - started)
    return buffer.numel() * 4 / best


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine has been busy, CPU seconds this process and its children used)."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    busy = (sum(fields) - fields[3] - fields[4]) / ticks  # all but idle and iowait
    mine = sum(
        getattr(resource.getrusage(who), f)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )
    return busy, mine


def others(start: tuple[float, float], wall_s: float) -> dict[str, float]:
    """CPU seconds other processes used since ``start`` (a ``cpu_seconds()``): what shared the cores."""
    busy, mine = cpu_seconds()
    return {
        "wall_s": round(wall_s, 1),
        "cpu_s_all": round(busy - start[0], 1),
        "cpu_s_ours": round(mine - start[1], 1),
        "cpu_s_others": round(max(0.0, (busy - start[0]) - (mine - start[1])), 1),
    }
