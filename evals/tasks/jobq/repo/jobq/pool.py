"""A worker pool: run an async handler over many jobs, a few at a time, with retries."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from jobq.retry import retry


@dataclass
class Result:
    job: Any
    value: Any = None
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Pool:
    def __init__(self, handler, *, concurrency: int = 4, attempts: int = 3, base_delay: float = 0.1, clock=None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.handler = handler
        self.concurrency = concurrency
        self.attempts = attempts
        self.base_delay = base_delay
        self.clock = clock
        self.active = 0
        self.peak = 0  # most jobs that ever ran at once
        self._slots = asyncio.Semaphore(concurrency)

    async def run_one(self, job) -> Result:
        async with self._slots:
            self.active += 1
            self.peak = max(self.peak, self.active)
            try:
                value = await retry(
                    lambda: self.handler(job), attempts=self.attempts, base_delay=self.base_delay, clock=self.clock
                )
                return Result(job, value)
            except Exception as err:
                return Result(job, error=err)
            finally:
                self.active -= 1

    async def map(self, jobs) -> list[Result]:
        """One result per job, in the order of ``jobs`` (not the order they finish in)."""
        return list(await asyncio.gather(*(self.run_one(job) for job in jobs)))
