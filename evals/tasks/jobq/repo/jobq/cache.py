"""A TTL cache whose misses are fetched once, however many callers wait for the same key."""

from __future__ import annotations

import asyncio

from jobq.clock import SystemClock


class TTLCache:
    def __init__(self, ttl: float, clock=None) -> None:
        self.ttl = ttl
        self.clock = clock or SystemClock()
        self._entries: dict = {}
        self._pending: dict = {}
        self.fetches = 0

    def get(self, key, default=None):
        entry = self._entries.get(key)
        if entry is None:
            return default
        value, expires = entry
        if expires <= self.clock.monotonic():
            del self._entries[key]
            return default
        return value

    def set(self, key, value) -> None:
        self._entries[key] = (value, self.clock.monotonic() + self.ttl)

    def __len__(self) -> int:
        return len(self._entries)

    async def get_or_fetch(self, key, fetch):
        """The cached value, or ``await fetch(key)`` stored; concurrent misses share one fetch."""
        missing = object()
        value = self.get(key, missing)
        if value is not missing:
            return value
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            self.fetches += 1
            value = await fetch(key)
        except BaseException as err:
            future.set_exception(err)
            future.exception()  # retrieved here: waiters, if any, re-raise it themselves
            raise
        finally:
            del self._pending[key]
        self.set(key, value)
        future.set_result(value)
        return value
