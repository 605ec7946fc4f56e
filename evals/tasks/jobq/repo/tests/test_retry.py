import asyncio

import pytest

from jobq.clock import FakeClock
from jobq.retry import retry


def flaky(failures):
    calls = []

    async def fn():
        calls.append(1)
        if len(calls) <= failures:
            raise ConnectionError(f"failure {len(calls)}")
        return "ok"

    return fn, calls


def test_success_first_time():
    fn, calls = flaky(0)
    assert asyncio.run(retry(fn, clock=FakeClock())) == "ok"
    assert len(calls) == 1


def test_other_errors_are_not_retried():
    async def broken():
        raise KeyError("x")

    with pytest.raises(KeyError):
        asyncio.run(retry(broken, retry_on=(ConnectionError,), clock=FakeClock()))


def test_attempts_must_be_positive():
    fn, _ = flaky(0)
    with pytest.raises(ValueError):
        asyncio.run(retry(fn, attempts=0))
