import asyncio

from jobq.cache import TTLCache
from jobq.clock import FakeClock


def test_set_and_get():
    cache = TTLCache(60, clock=FakeClock())
    cache.set("a", 1)
    assert cache.get("a") == 1 and cache.get("b", "none") == "none"


def test_get_or_fetch_caches():
    async def scenario():
        cache = TTLCache(60, clock=FakeClock())

        async def fetch(key):
            return key.upper()

        first = await cache.get_or_fetch("x", fetch)
        second = await cache.get_or_fetch("x", fetch)
        return first, second, cache.fetches

    assert asyncio.run(scenario()) == ("X", "X", 1)


def test_concurrent_misses_share_one_fetch():
    async def scenario():
        cache = TTLCache(60, clock=FakeClock())

        async def fetch(key):
            await asyncio.sleep(0.01)
            return 42

        values = await asyncio.gather(*(cache.get_or_fetch("k", fetch) for _ in range(10)))
        return values, cache.fetches

    assert asyncio.run(scenario()) == ([42] * 10, 1)
