"""``codeagent bench attempts``: plumbing at a 100-token shared prompt; no timing is asserted
(the real run is by hand, with its load average: see bench/attempts.py)."""

from __future__ import annotations

from codeagent.bench.attempts import bench_attempts


def test_four_attempts_prefill_the_shared_prompt_once_and_the_uncached_row_four_times():
    results = bench_attempts(4, shared=100, new_tokens=4)
    one, many, uncached = results["runs"]
    assert one["prefill_tokens"] == 100 and one["cached_tokens"] == 0
    assert many["prefill_tokens"] == 100 + 3 * (100 - 96) and many["cached_tokens"] == 3 * 96  # blocks of 32
    assert uncached["prefill_tokens"] == 4 * 100 and uncached["cached_tokens"] == 0
    assert results["targets"]["prefill_once"] is True
    assert many["decode_tokens"] == 4 * 3 and many["decode_tokens_per_s"] > 0
    assert set(results["load_average"]) == {"before", "after"}
