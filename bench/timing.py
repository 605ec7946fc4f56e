"""Timing for the benches: CUDA events on a GPU, wall clock elsewhere.

``measure(fn)`` warms up, then repeats ``fn`` until ``min_time_s`` has passed (at least
``min_reps`` times) and returns the median seconds per call. On CUDA each call is timed
with events on the current stream, so launch gaps between calls are not counted but
host work inside ``fn`` that stalls the GPU is. ``copy_bandwidth`` measures a
device-to-device copy: the practical ceiling for memory-bound kernels.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def measure(
    fn: Callable[[], object], device: torch.device, min_time_s: float = 0.05, min_reps: int = 5
) -> float:
    for _ in range(2):
        fn()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < min_reps or time.perf_counter() - started < min_time_s:
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(begin.elapsed_time(end) / 1000.0)
        else:
            tick = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - tick)
        if len(samples) >= 1000:
            break
    return statistics.median(samples)


def copy_bandwidth(device: torch.device, size_bytes: int = 1 << 30) -> float:
    """Bytes per second of a device-to-device copy (read + write counted)."""
    if device.type != "cuda":
        size_bytes = min(size_bytes, 1 << 26)
    src = torch.empty(size_bytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    seconds = measure(lambda: dst.copy_(src), device)
    return 2 * size_bytes / seconds
