"""What the HTTP clients share: how long a server asks us to wait, and server-sent events."""

from __future__ import annotations

import time
from email.utils import formatdate

import httpx
import pytest

from codeagent.agent.clients.sse import events
from codeagent.agent.clients.transport import retry_after
from codeagent.agent.protocol import ModelError


def wait(**headers: str) -> float | None:
    return retry_after(httpx.Headers({name.replace("_", "-"): value for name, value in headers.items()}))


def test_retry_after_in_milliseconds_wins_over_seconds() -> None:
    assert wait(retry_after_ms="1500", retry_after="9") == 1.5
    assert wait(retry_after="2") == 2.0
    assert wait(retry_after="0.25") == 0.25


def test_retry_after_as_an_http_date() -> None:
    later = wait(retry_after=formatdate(time.time() + 30, usegmt=True))
    assert later is not None and 25 <= later <= 31


def test_openai_reset_durations_of_exhausted_limits() -> None:
    headers = {
        "x_ratelimit_remaining_requests": "0",
        "x_ratelimit_reset_requests": "1m30s",
        "x_ratelimit_remaining_tokens": "5000",
        "x_ratelimit_reset_tokens": "6m0s",
    }
    assert wait(**headers) == 90.0  # the tokens limit has room: its reset does not matter
    assert wait(x_ratelimit_remaining_tokens="0", x_ratelimit_reset_tokens="20ms") == pytest.approx(0.02)
    assert wait(x_ratelimit_reset_tokens="1h2m3.5s") == pytest.approx(3723.5)  # remaining unknown
    assert wait(x_ratelimit_reset_tokens="soon") is None


def test_no_header_leaves_it_to_our_backoff() -> None:
    assert wait() is None
    assert wait(retry_after="whenever") is None
    assert (
        wait(anthropic_ratelimit_requests_remaining="0", anthropic_ratelimit_requests_reset="garbage") is None
    )


def test_events_with_names_multiline_data_comments_and_done() -> None:
    lines = [
        ": keep-alive",
        "",
        "event: message_start",
        'data: {"type": "message_start",',
        'data:  "n": 1}',
        "",
        'data: {"plain": true}',
        "",
        "data: [DONE]",
        "",
        'data: {"after": "done"}',
        "",
    ]
    assert list(events(lines)) == [
        ("message_start", {"type": "message_start", "n": 1}),
        ("", {"plain": True}),
    ]


def test_a_last_event_without_its_blank_line_still_counts_and_garbage_is_an_error() -> None:
    assert list(events(['data: {"a": 1}'])) == [("", {"a": 1})]
    with pytest.raises(ModelError, match="malformed stream chunk"):
        list(events(["data: {oops", ""]))
    with pytest.raises(ModelError, match="not an object"):
        list(events(["data: [1, 2]", ""]))
