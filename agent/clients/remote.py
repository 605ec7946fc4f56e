"""An OpenAI-compatible chat-completions client over HTTP (``httpx``, synchronous).

``POST {base_url}/chat/completions``, streamed by default over server-sent events: visible
content goes to ``on_token`` as it arrives (every chunk calls it, with "" when it carries no
content, so a caller can stop a long tool call being written), tool-call deltas are joined by ``index``, and
reasoning (``reasoning_content`` or ``reasoning``) is kept apart. Usage comes from the final
chunk (``stream_options.include_usage``), with ``prompt_tokens_details.cached_tokens``.

429, 5xx and connection errors are retried with exponential backoff and jitter (base
``backoff_s``, capped at ``max_backoff_s``, as is ``Retry-After``, which is honoured); after
``max_retries``, or at once for other 4xx, a ``ModelError`` gives the status and the
server's message. The API key goes as a bearer token and is scrubbed from every error,
since some servers echo it back.

Limits: ``timeout_s`` bounds each wait for data, not the whole answer, and a read timeout
is not retried (a server that stalled that long is unlikely to do better at once). A stream
that breaks mid-way is retried from scratch, so ``on_token`` may see an answer's start
twice. Prompt counts, and usage from servers that send none (``last_usage_exact`` is then
False), are estimates: there is no tokenizer on this side. Message keys starting with ``_``
(``_raw``) are codeagent's own and are not sent.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from codeagent.agent.protocol import (
    Completion,
    Message,
    ModelError,
    TokenCallback,
    ToolSchema,
    Usage,
    estimate_tokens,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
HINTS = {
    401: "check the API key (CODEAGENT_API_KEY or OPENAI_API_KEY)",
    403: "the API key may lack access to this model",
    404: "check the base URL and the model name",
}


@dataclass(slots=True)
class RemoteSettings:
    base_url: str
    api_key: str | None
    model: str
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    max_retries: int = 5
    context_window: int = 128_000
    temperature: float | None = None
    max_tokens: int | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    backoff_s: float = 1.0  # first retry waits up to this long; each later one doubles it
    max_backoff_s: float = 60.0
    stream: bool = True

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise ModelError(f"base URL must start with http:// or https://, not {self.base_url!r}")
        if not self.model:
            raise ModelError("the remote model has no name")
        if self.max_retries < 0 or self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ModelError("max_retries must be >= 0 and timeouts > 0")

    @classmethod
    def from_env(
        cls,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> RemoteSettings:
        """Settings from flags or config values (the arguments; None means unset), then the
        ``CODEAGENT_*`` and ``OPENAI_*`` environment variables, then defaults."""
        env = os.environ if env is None else env
        model = model or _model_from_env(env)
        if not model:
            raise ModelError(
                "the remote model has no name: use --model remote:NAME, or set CODEAGENT_MODEL or OPENAI_MODEL"
            )
        base_url = base_url or env.get("CODEAGENT_BASE_URL") or env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        api_key = api_key or env.get("CODEAGENT_API_KEY") or env.get("OPENAI_API_KEY") or None
        given = {name: value for name, value in options.items() if value is not None}
        return cls(base_url=base_url, api_key=api_key, model=model, **given)


def _model_from_env(env: Mapping[str, str]) -> str | None:
    # CODEAGENT_MODEL is also the CLI's default model spec, so it may read "remote:NAME" or
    # name another kind of model altogether ("scripted:FILE"), which is no remote model name.
    spec = env.get("CODEAGENT_MODEL") or ""
    kind, _, name = spec.partition(":")
    if kind in ("remote", "openai"):
        spec = name
    elif kind == "scripted":
        spec = ""
    return spec or env.get("OPENAI_MODEL") or None


class _Retryable(Exception):
    """A failure worth another try: rate limits, server errors, broken connections."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RemoteClient:
    def __init__(self, settings: RemoteSettings) -> None:
        self.settings = settings
        self.name = f"remote:{settings.model}"
        self.context_window = settings.context_window
        self.last_usage_exact = False
        self.url = f"{settings.base_url}/chat/completions"
        headers = {"Content-Type": "application/json", **settings.extra_headers}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        timeout = httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s)
        self._http = httpx.Client(headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def count_tokens(self, messages: list[Message], tools: list[ToolSchema]) -> tuple[int, bool]:
        return estimate_tokens(json.dumps([_public(m) for m in messages]) + json.dumps(tools)), False

    def complete(
        self, messages: list[Message], tools: list[ToolSchema], on_token: TokenCallback | None = None
    ) -> Completion:
        try:
            completion, usage_sent = self._with_retries(self._body(messages, tools), on_token)
        except ModelError as err:
            raise ModelError(self._redact(str(err))) from err.__cause__
        self.last_usage_exact = usage_sent
        if not usage_sent:
            completion.usage = Usage(
                self.count_tokens(messages, tools)[0], _estimate_reply(completion.message)
            )
        return completion

    def _body(self, messages: list[Message], tools: list[ToolSchema]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.settings.model, "messages": [_public(m) for m in messages]}
        if tools:
            body["tools"] = tools
        if self.settings.temperature is not None:
            body["temperature"] = self.settings.temperature
        if self.settings.max_tokens is not None:
            body["max_tokens"] = self.settings.max_tokens
        if self.settings.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def _with_retries(self, body: dict[str, Any], on_token: TokenCallback | None) -> tuple[Completion, bool]:
        attempt = 0
        while True:
            try:
                return self._send(body, on_token)
            except _Retryable as err:
                if attempt >= self.settings.max_retries:
                    raise ModelError(f"{self.url}: gave up after {attempt + 1} attempts: {err}") from err
                time.sleep(self._delay(attempt, err.retry_after))
                attempt += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.settings.max_backoff_s)
        ceiling = min(self.settings.backoff_s * 2**attempt, self.settings.max_backoff_s)
        return random.uniform(ceiling / 2, ceiling)  # jitter keeps many clients from retrying in step

    def _send(self, body: dict[str, Any], on_token: TokenCallback | None) -> tuple[Completion, bool]:
        try:
            with self._http.stream("POST", self.url, json=body) as response:
                _check_status(response)
                if "text/event-stream" in response.headers.get("Content-Type", ""):
                    return _assemble(_events(response), on_token)
                # A server may ignore "stream": true and answer with one JSON object.
                return _from_json(response, on_token)
        except httpx.ConnectTimeout as err:
            raise _Retryable(f"could not connect within {self.settings.connect_timeout_s:g}s") from err
        except httpx.TimeoutException as err:
            raise ModelError(f"{self.url}: no data within {self.settings.timeout_s:g}s (timeout)") from err
        except httpx.TransportError as err:
            raise _Retryable(f"connection failed: {type(err).__name__}: {err}") from err

    def _redact(self, text: str) -> str:
        key = self.settings.api_key
        return text.replace(key, "***") if key else text


def _public(message: Message) -> Message:
    """The message without codeagent's private keys (``_raw``...), which no endpoint should see."""
    return {key: value for key, value in message.items() if not key.startswith("_")}


def _check_status(response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    response.read()
    message = f"HTTP {status}: {_error_message(response)}"
    if status == 429 or status >= 500:
        raise _Retryable(message, _retry_after(response))
    hint = f" ({HINTS[status]})" if status in HINTS else ""
    raise ModelError(f"{response.request.url} answered {message}{hint}")


def _error_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(data, dict):
        # Shapes seen in the wild: OpenAI {"error": {"message"}}, {"error": "..."},
        # FastAPI {"detail": ...}, and plain {"message": ...}.
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for value in (error, data.get("detail"), data.get("message")):
            if value:
                return str(value)[:500]
    return json.dumps(data)[:500]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if value.replace(".", "", 1).isdigit():
        return float(value)
    try:  # the other form the header may take: an HTTP date
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None  # absent or unreadable: our own backoff applies


def _events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue  # comments (": keep-alive"), event names and blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            yield json.loads(data)
        except json.JSONDecodeError as err:
            raise ModelError(f"the endpoint sent a malformed stream chunk: {data[:200]}") from err


def _assemble(chunks: Iterator[dict[str, Any]], on_token: TokenCallback | None) -> tuple[Completion, bool]:
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    usage: Usage | None = None
    finish = "stop"
    for chunk in chunks:
        if chunk.get("error"):
            raise ModelError(f"the endpoint reported an error mid-stream: {chunk['error']}")
        if chunk.get("usage"):
            usage = _usage(chunk["usage"])
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            finish = choice.get("finish_reason") or finish
            if delta.get("content"):
                content.append(delta["content"])
            if on_token:  # every chunk, "" when it shows nothing: the caller may stop the reply at any chunk
                on_token(delta.get("content") or "")
            reasoning.append(delta.get("reasoning_content") or delta.get("reasoning") or "")
            for call in delta.get("tool_calls") or []:
                _merge_call(calls, call)
    raw = {"content": "".join(content), "reasoning_content": "".join(reasoning)}
    message = _message(raw, [calls[index] for index in sorted(calls)])
    return Completion(message, usage or Usage(), finish), usage is not None


def _merge_call(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    index = int(delta.get("index", len(calls)))
    call = calls.setdefault(
        index, {"id": f"call_{index}", "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if delta.get("id"):
        call["id"] = delta["id"]
    function = delta.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""


def _from_json(response: httpx.Response, on_token: TokenCallback | None) -> tuple[Completion, bool]:
    try:
        data = json.loads(response.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{response.request.url} answered with something that is not JSON") from err
    choices = data.get("choices") if isinstance(data, dict) else None
    if not choices:
        raise ModelError(f"the endpoint answered without choices: {json.dumps(data)[:300]}")
    raw = choices[0].get("message") or {}
    message = _message(raw, raw.get("tool_calls") or [])
    if on_token and message["content"]:
        on_token(message["content"])
    usage = data.get("usage")
    completion = Completion(
        message, _usage(usage) if usage else Usage(), choices[0].get("finish_reason") or "stop"
    )
    return completion, bool(usage)


def _message(raw: dict[str, Any], tool_calls: list[dict[str, Any]]) -> Message:
    message: Message = {"role": "assistant", "content": raw.get("content") or ""}
    reasoning = raw.get("reasoning_content") or raw.get("reasoning")
    if reasoning:
        message["reasoning_content"] = reasoning
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _usage(raw: dict[str, Any]) -> Usage:
    cached = (raw.get("prompt_tokens_details") or {}).get("cached_tokens")
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0), int(cached or 0))


def _estimate_reply(message: Message) -> int:
    text = message["content"] + message.get("reasoning_content", "")
    return estimate_tokens(text + json.dumps(message.get("tool_calls", [])))
