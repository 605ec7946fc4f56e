"""Per-key concurrency limits: at most ``limit`` holders of each key at a time (e.g. per host)."""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque


class KeyedLimiter:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._active: dict = defaultdict(int)
        self._waiters: dict = defaultdict(deque)

    def hold(self, key) -> _Hold:
        return _Hold(self, key)

    def active(self, key) -> int:
        return self._active[key]

    async def acquire(self, key) -> None:
        while self._active[key] >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters[key].append(waiter)
            await waiter
        self._active[key] += 1

    def release(self, key) -> None:
        self._active[key] -= 1
        waiters = self._waiters[key]
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break


class _Hold:
    def __init__(self, limiter: KeyedLimiter, key) -> None:
        self.limiter = limiter
        self.key = key

    async def __aenter__(self) -> _Hold:
        await self.limiter.acquire(self.key)
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        self.limiter.release(self.key)
        return False
