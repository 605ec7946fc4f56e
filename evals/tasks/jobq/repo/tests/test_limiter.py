import asyncio

from jobq.limiter import KeyedLimiter


def test_limit_per_key():
    async def scenario():
        limiter = KeyedLimiter(2)
        peak = {"a": 0, "b": 0}

        async def work(key):
            async with limiter.hold(key):
                peak[key] = max(peak[key], limiter.active(key))
                await asyncio.sleep(0.01)

        await asyncio.gather(*(work("a") for _ in range(5)), *(work("b") for _ in range(3)))
        return peak, limiter.active("a"), limiter.active("b")

    assert asyncio.run(scenario()) == ({"a": 2, "b": 2}, 0, 0)
