"""Summary statistics over lists of numbers; None values are ignored."""

from __future__ import annotations

import math
import statistics


def _clean(values) -> list[float]:
    return [v for v in values if v is not None]


def mean(values) -> float:
    data = _clean(values)
    if not data:
        raise ValueError("mean of no values")
    return math.fsum(data) / len(data)


def median(values) -> float:
    data = sorted(_clean(values))
    if not data:
        raise ValueError("median of no values")
    middle = len(data) // 2
    if len(data) % 2:
        return data[middle]
    return (data[middle - 1] + data[middle]) / 2


def percentile(values, p: float) -> float:
    """The p-th percentile (0-100), interpolating linearly between the closest ranks."""
    data = sorted(_clean(values))
    if not data:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be between 0 and 100, not {p}")
    rank = (len(data) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (rank - low)


def stdev(values) -> float:
    """Sample standard deviation (n - 1 in the denominator), like spreadsheets' STDEV."""
    data = _clean(values)
    if len(data) < 2:
        raise ValueError("stdev needs at least two values")
    return statistics.stdev(data)
