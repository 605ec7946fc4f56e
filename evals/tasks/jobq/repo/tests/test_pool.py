import asyncio

from jobq.pool import Pool


async def double(job):
    await asyncio.sleep(0)
    return job * 2


async def fail_on_three(job):
    if job == 3:
        raise ValueError("three")
    return job


def test_map_values():
    results = asyncio.run(Pool(double).map([1, 2, 3]))
    assert sorted(r.value for r in results) == [2, 4, 6]
    assert all(r.ok for r in results)


def test_failures_are_results():
    results = asyncio.run(Pool(fail_on_three, concurrency=1, attempts=2, base_delay=0).map([3]))
    assert not results[0].ok and str(results[0].error) == "three"


def test_empty():
    assert asyncio.run(Pool(double).map([])) == []
