"""The machine's memory bandwidth, measured in the bench's own run: the roofline's denominator.

A streaming read: ``torch.sum`` over a float32 buffer much larger than any cache (2 GiB by
default), on torch's threads (the bench's), the best of ``repeats``; the buffer is written
once first, so its pages are resident and the sum reads memory, not page faults. The best
rather than the median, since the roofline is what the memory can deliver, and neighbours
on a shared host only ever lower it.

Limits: one reader pattern (sequential, all threads): a decode step's reads are large
contiguous weight blocks too, so this is the ceiling they can hope for; it is not a STREAM
triad, which counts writes as well.
"""

from __future__ import annotations

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
