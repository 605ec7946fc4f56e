"""Rolling windows over a series."""

from __future__ import annotations

import math


def rolling_mean(values: list[float], size: int) -> list[float | None]:
    """Mean of each window of ``size`` values ending at each position; None until the first window is full."""
    if size < 1:
        raise ValueError("window size must be at least 1")
    result: list[float | None] = []
    for end in range(len(values)):
        start = end - size + 1
        if start < 0:
            result.append(None)
        else:
            result.append(math.fsum(values[start : end + 1]) / size)
    return result


def rolling_sum(values: list[float], size: int) -> list[float | None]:
    return [None if m is None else m * size for m in rolling_mean(values, size)]
