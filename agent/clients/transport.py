"""One POST to a model API, retried as the providers ask, with errors as one clear line.

``Transport.post`` sends a JSON body and hands the open response to a reader (which parses
a stream or a JSON answer). 408, 409, 429, 5xx (529 is Anthropic's "overloaded") and
connection errors are retried with exponential backoff and jitter (base ``backoff_s``,
doubling, capped at ``max_backoff_s``); a reader raises ``Retryable`` for failures inside a
stream that deserve the same (an overloaded error event, a stream cut short). When the
server says how long to wait, that wins, capped the same way: ``retry-after-ms``, then
``retry-after`` (seconds or an HTTP date), then the reset of an exhausted rate limit
(Anthropic's ``anthropic-ratelimit-*-reset``, RFC 3339 times; OpenAI's
``x-ratelimit-reset-*``, durations such as ``6m0s`` or ``20ms``). After ``max_retries``, or at
once for other 4xx, a ``ModelError`` gives the URL, the status, the server's own message and
a hint for the usual causes, on one line, with the API key scrubbed (some servers echo it).

Limits: ``timeout_s`` bounds each wait for data, not the whole answer, and a read timeout is
not retried (a server that stalled that long is unlikely to do better at once). A stream that
breaks mid-way is retried from scratch, so ``on_token`` may see an answer's start twice.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from codeagent.agent.clients.settings import RemoteSettings
from codeagent.agent.protocol import ModelError

T = TypeVar("T")
RETRIED = {408, 409, 429}
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class Retryable(Exception):
    """A failure worth another try: rate limits, server errors, broken connections and streams."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Transport:
    def __init__(self, settings: RemoteSettings, headers: dict[str, str], hints: dict[int, str]) -> None:
        self.settings = settings
        self.hints = hints
        timeout = httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
        self._http = httpx.Client(headers={**headers, **settings.extra_headers}, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def post(self, url: str, body: dict[str, Any], read: Callable[[httpx.Response], T]) -> T:
        try:
            return self._with_retries(url, body, read)
        except ModelError as err:
            raise ModelError(self.redact(_one_line(str(err)))) from err.__cause__

    def get_json(self, url: str) -> Any:
        """One GET without retries (a lookup that has a fallback); ``ModelError`` if it fails."""
        try:
            response = self._http.get(url)
            check_status(response, self.hints)
            return response.json()
        except (Retryable, httpx.HTTPError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModelError(self.redact(f"{url}: {err}")) from err

    def redact(self, text: str) -> str:
        key = self.settings.api_key
        return text.replace(key, "***") if key else text

    def _with_retries(self, url: str, body: dict[str, Any], read: Callable[[httpx.Response], T]) -> T:
        attempt = 0
        while True:
            try:
                return self._send(url, body, read)
            except Retryable as err:
                if attempt >= self.settings.max_retries:
                    raise ModelError(f"{url}: gave up after {attempt + 1} attempts: {err}") from err
                time.sleep(self._delay(attempt, err.retry_after))
                attempt += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.settings.max_backoff_s)
        ceiling = min(self.settings.backoff_s * 2**attempt, self.settings.max_backoff_s)
        return random.uniform(ceiling / 2, ceiling)  # jitter keeps many clients from retrying in step

    def _send(self, url: str, body: dict[str, Any], read: Callable[[httpx.Response], T]) -> T:
        try:
            with self._http.stream("POST", url, json=body) as response:
                check_status(response, self.hints)
                return read(response)
        except httpx.ConnectTimeout as err:
            raise Retryable(f"could not connect within {self.settings.connect_timeout_s:g}s") from err
        except httpx.TimeoutException as err:
            raise ModelError(f"{url}: no data within {self.settings.timeout_s:g}s (timeout)") from err
        except httpx.TransportError as err:
            raise Retryable(f"connection failed: {type(err).__name__}: {err}") from err


def check_status(response: httpx.Response, hints: dict[int, str]) -> None:
    status = response.status_code
    if status < 400:
        return
    response.read()
    message = f"HTTP {status}: {error_message(response)}"
    if status in RETRIED or status >= 500:
        raise Retryable(message, retry_after(response.headers))
    hint = f" ({hints[status]})" if status in hints else ""
    raise ModelError(f"{response.request.url} answered {message}{hint}")


def error_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(data, dict):
        # Shapes seen: OpenAI and Anthropic {"error": {"message"}}, {"error": "..."},
        # FastAPI {"detail": ...}, and plain {"message": ...}.
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        for value in (error, data.get("detail"), data.get("message")):
            if value:
                return str(value)[:500]
    return json.dumps(data)[:500]


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the server asks us to wait, or None when it does not say."""
    milliseconds = _number(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    value = (headers.get("retry-after") or "").strip()
    seconds = _number(value)
    if seconds is not None:
        return seconds
    if value:
        try:  # the other form the header may take: an HTTP date
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            pass
    return _exhausted_limit_reset(headers)


def _exhausted_limit_reset(headers: httpx.Headers) -> float | None:
    """The latest reset among the rate limits with nothing remaining (or whose remainder is
    not given): the soonest moment every exhausted limit has room again."""
    waits = []
    for name, value in headers.items():
        name = name.lower()
        if name.startswith("anthropic-ratelimit-") and name.endswith("-reset"):
            remaining = headers.get(name.removesuffix("-reset") + "-remaining")
            wait = _until(value)
        elif name.startswith("x-ratelimit-reset-"):
            remaining = headers.get("x-ratelimit-remaining-" + name.removeprefix("x-ratelimit-reset-"))
            wait = _duration(value)
        else:
            continue
        if wait is not None and remaining in (None, "0"):
            waits.append(wait)
    return max(waits) if waits else None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None


def _until(timestamp: str) -> float | None:
    try:
        moment = datetime.fromisoformat(timestamp.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - time.time())


def _duration(text: str) -> float | None:
    text = text.strip()
    if _number(text) is not None:
        return _number(text)
    parts = DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * UNIT_S[unit] for number, unit in parts)


def _one_line(text: str) -> str:
    return " ".join(text.split())
