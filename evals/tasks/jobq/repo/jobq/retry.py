"""Retrying an async call with exponential backoff."""

from __future__ import annotations

from jobq.clock import SystemClock


async def retry(fn, *, attempts: int = 3, base_delay: float = 0.1, max_delay: float = 5.0, retry_on=(Exception,), clock=None):
    """``await fn()`` up to ``attempts`` times in total; waits ``base_delay * 2**k`` (at most
    ``max_delay``) between tries; the last failure is raised."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    clock = clock or SystemClock()
    for attempt in range(1, attempts + 1):
        try:
            return await fn()
        except retry_on:
            if attempt == attempts:
                raise
            await clock.sleep(min(max_delay, base_delay * 2 ** (attempt - 1)))
