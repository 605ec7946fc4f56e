"""When the GitHub client tries a request again, and how long it waits first.

``RetryPolicy.delay(attempt, response)`` answers with the seconds to wait before another try,
or None when the failure is final:

- connection failures (refused, reset, cut short, timed out: ``response`` is None) and 5xx
  answers: exponential backoff with jitter (``base_s`` doubling, capped at ``max_delay_s``);
- rate limits, as GitHub documents them: a 429, or a 403 that carries ``Retry-After``, says
  ``x-ratelimit-remaining: 0`` or names a rate limit in its message. The wait is what the
  answer asks for: ``Retry-After`` seconds, else until ``x-ratelimit-reset`` (epoch seconds,
  plus a second for clock skew), else a minute (GitHub's advice for a secondary limit that
  names no time);
- anything else, every other 4xx included, is final: the request itself is wrong, and trying
  it again cannot help.

The caller stops after ``attempts`` tries, or sooner when the next wait would take the waits
together past ``max_wait_s`` (a rate limit that resets in an hour fails at once, saying so).
``sleep`` and ``clock`` are the process's own unless a caller passes others (the tests record
the waits instead of sleeping them).

Limits: a POST retried after a 5xx or a cut connection may have taken effect the first time;
``GitHubClient`` answers the one case that matters for ``fix`` (a pull request that then
"already exists" is looked up, not reported as a failure), and a retried comment may appear
twice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

SECONDARY_LIMIT_WAIT_S = 60.0
CLOCK_SKEW_S = 1.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    base_s: float = 1.0
    max_delay_s: float = 30.0
    max_wait_s: float = 120.0  # all waits of one request together
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time

    def delay(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before try ``attempt + 1`` (0-based), or None: do not retry."""
        if response is not None and response.status_code < 500:
            return rate_limit_wait(response, self.clock())
        ceiling = min(self.base_s * 2**attempt, self.max_delay_s)
        return random.uniform(ceiling / 2, ceiling)  # jitter keeps many runners from retrying in step


def is_rate_limited(response: httpx.Response) -> bool:
    status, headers = response.status_code, response.headers
    if status == 429:
        return True
    if status != 403:
        return False
    if "retry-after" in headers or headers.get("x-ratelimit-remaining") == "0":
        return True
    return "rate limit" in response.text.lower()


def rate_limit_wait(response: httpx.Response, now: float) -> float | None:
    """Seconds a rate-limited answer asks for; None when the answer is no rate limit."""
    if not is_rate_limited(response):
        return None
    headers = response.headers
    after = _seconds(headers.get("retry-after"))
    if after is not None:
        return after
    reset = _seconds(headers.get("x-ratelimit-reset"))
    if reset is not None and headers.get("x-ratelimit-remaining") == "0":
        return max(0.0, reset - now) + CLOCK_SKEW_S
    return SECONDARY_LIMIT_WAIT_S


def _seconds(value: str | None) -> float | None:
    try:
        number = float((value or "").strip())
    except ValueError:
        return None
    return number if number >= 0 else None
