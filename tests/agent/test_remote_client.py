"""The OpenAI-compatible client against a real HTTP server on 127.0.0.1 that plays back
scripted replies (JSON bodies, SSE streams, errors, stalls) and records every request."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from codeagent.agent.clients import UnknownModelSpec, make_client
from codeagent.agent.clients.remote import RemoteClient, RemoteSettings
from codeagent.agent.clients.settings import OPENAI_COMPATIBLE
from codeagent.agent.protocol import ModelError

KEY = "sk-test-secret-4242"
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "fix the bug"}]
TOOLS = [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}]


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # a JSON value, sent as application/json
    chunks: list[dict[str, Any]] | None = None  # sent as an SSE stream, then [DONE]
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class Endpoint:
    def __init__(self, url: str) -> None:
        self.url = url
        self.replies: list[Reply] = []
        self.requests: list[dict[str, Any]] = []

    def settings(self, **options: Any) -> RemoteSettings:
        return RemoteSettings(self.url, KEY, "test-model", **{"backoff_s": 0.001, **options})


def handler_for(endpoint: Endpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            endpoint.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            reply = endpoint.replies.pop(0) if endpoint.replies else Reply(500, {"error": "no reply left"})
            time.sleep(reply.delay_s)
            # the client may have given up waiting, as the timeout test intends
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._send(reply)

        def _send(self, reply: Reply) -> None:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.chunks is None:
                raw = json.dumps(reply.body).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
                return
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b": keep-alive\n\n")
            for chunk in reply.chunks:
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    endpoint = Endpoint(f"http://127.0.0.1:{server.server_address[1]}/v1")
    server.RequestHandlerClass = handler_for(endpoint)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield endpoint
    server.shutdown()
    server.server_close()


def delta(**fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": None}]}


def call_delta(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> dict:
    function = {"arguments": arguments, **({"name": name} if name else {})}
    return delta(tool_calls=[{"index": index, **({"id": call_id} if call_id else {}), "function": function}])


USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "prompt_tokens_details": {"cached_tokens": 96}}
OK = Reply(body={"choices": [{"message": {"role": "assistant", "content": "done"}, "finish_reason": "stop"}]})


def test_non_streaming_completion_with_tool_calls_and_cached_usage(endpoint: Endpoint) -> None:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
    }
    message = {"role": "assistant", "content": "Reading.", "reasoning": "look first", "tool_calls": [call]}
    endpoint.replies = [
        Reply(body={"choices": [{"message": message, "finish_reason": "tool_calls"}], "usage": USAGE})
    ]
    settings = endpoint.settings(stream=False, temperature=0.2, max_tokens=64, extra_headers={"X-Team": "qa"})
    client = RemoteClient(settings)
    tokens: list[str] = []
    completion = client.complete(MESSAGES, TOOLS, on_token=tokens.append)
    assert completion.message == {
        "role": "assistant",
        "content": "Reading.",
        "reasoning_content": "look first",
        "tool_calls": [call],
    }
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (120, 30)
    assert completion.usage.cached_tokens == 96 and client.last_usage_exact
    assert completion.finish_reason == "tool_calls" and tokens == ["Reading."]
    (request,) = endpoint.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {KEY}"
    assert request["headers"]["X-Team"] == "qa"
    body = request["body"]
    assert body["model"] == "test-model" and body["messages"] == MESSAGES and body["tools"] == TOOLS
    assert (body["temperature"], body["max_tokens"]) == (0.2, 64) and "stream" not in body


def test_streaming_joins_content_reasoning_and_tool_call_deltas(endpoint: Endpoint) -> None:
    chunks = [
        delta(role="assistant", content=""),
        delta(reasoning_content="The bug is "),
        delta(reasoning_content="in mean."),
        delta(content="Let me "),
        delta(content="look."),
        call_delta(0, "", call_id="call_a", name="read_file"),
        call_delta(0, '{"path": '),
        call_delta(1, '{"pattern": "mean"}', call_id="call_b", name="search"),
        call_delta(0, '"stats.py"}'),
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": USAGE},
    ]
    endpoint.replies = [Reply(chunks=chunks)]
    client = RemoteClient(endpoint.settings())
    tokens: list[str] = []
    completion = client.complete(MESSAGES, TOOLS, on_token=tokens.append)
    assert [t for t in tokens if t] == ["Let me ", "look."]  # chunks without content call it with ""
    message = completion.message
    assert message["content"] == "Let me look." and message["reasoning_content"] == "The bug is in mean."
    calls = message["tool_calls"]
    assert [(c["id"], c["type"], c["function"]["name"]) for c in calls] == [
        ("call_a", "function", "read_file"),
        ("call_b", "function", "search"),
    ]
    assert json.loads(calls[0]["function"]["arguments"]) == {"path": "stats.py"}
    assert json.loads(calls[1]["function"]["arguments"]) == {"pattern": "mean"}
    assert completion.finish_reason == "tool_calls"
    assert completion.usage.as_dict() == {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "cached_tokens": 96,
        "cache_creation_tokens": 0,
    }
    assert client.last_usage_exact
    body = endpoint.requests[0]["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_a_stream_without_usage_gets_an_estimate_that_does_not_claim_exactness(endpoint: Endpoint) -> None:
    endpoint.replies = [Reply(chunks=[delta(reasoning="hmm"), delta(content="All tests pass now.")])]
    client = RemoteClient(endpoint.settings())
    completion = client.complete(MESSAGES, [])
    assert completion.message == {
        "role": "assistant",
        "content": "All tests pass now.",
        "reasoning_content": "hmm",
    }
    assert completion.usage.prompt_tokens == client.count_tokens(MESSAGES, [])[0] > 0
    assert completion.usage.completion_tokens > 0 and completion.usage.cached_tokens == 0
    assert not client.last_usage_exact
    assert client.count_tokens(MESSAGES, TOOLS)[1] is False
    assert "tools" not in endpoint.requests[0]["body"]


def test_429_is_retried_after_the_servers_retry_after(endpoint: Endpoint) -> None:
    endpoint.replies = [Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "1"}), OK]
    started = time.monotonic()
    completion = RemoteClient(endpoint.settings()).complete(MESSAGES, [])
    assert completion.message["content"] == "done"
    assert len(endpoint.requests) == 2
    assert time.monotonic() - started >= 0.9  # the backoff base is 1 ms: only Retry-After explains this


def test_503_is_retried_with_backoff_until_it_succeeds(endpoint: Endpoint) -> None:
    endpoint.replies = [Reply(503, {"error": {"message": "overloaded"}}), Reply(502, "bad gateway"), OK]
    completion = RemoteClient(endpoint.settings()).complete(MESSAGES, [])
    assert completion.message["content"] == "done" and len(endpoint.requests) == 3


def test_gives_up_after_max_retries_with_status_and_server_message(endpoint: Endpoint) -> None:
    endpoint.replies = [Reply(500, {"error": {"message": "engine crashed"}}) for _ in range(5)]
    with pytest.raises(ModelError) as caught:
        RemoteClient(endpoint.settings(max_retries=2)).complete(MESSAGES, [])
    message = str(caught.value)
    assert "gave up after 3 attempts" in message and "HTTP 500" in message and "engine crashed" in message
    assert len(endpoint.requests) == 3 and KEY not in message


def test_400_fails_at_once_with_the_servers_message(endpoint: Endpoint) -> None:
    endpoint.replies = [Reply(400, {"error": {"message": "tools[0] is not a valid schema"}}), OK]
    with pytest.raises(ModelError, match=r"HTTP 400: tools\[0\] is not a valid schema"):
        RemoteClient(endpoint.settings()).complete(MESSAGES, TOOLS)
    assert len(endpoint.requests) == 1


def test_the_api_key_never_appears_in_errors(endpoint: Endpoint) -> None:
    endpoint.replies = [Reply(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}})]
    with pytest.raises(ModelError) as caught:
        RemoteClient(endpoint.settings()).complete(MESSAGES, [])
    message = str(caught.value)
    assert KEY not in message and "Incorrect API key provided: ***" in message
    assert "HTTP 401" in message and "API key" in message


def test_a_stalled_server_times_out_without_retrying(endpoint: Endpoint) -> None:
    endpoint.replies = [Reply(body={"choices": []}, delay_s=2.0)]
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"no data within 0\.3s"):
        RemoteClient(endpoint.settings(timeout_s=0.3, max_retries=3)).complete(MESSAGES, [])
    assert time.monotonic() - started < 1.5 and len(endpoint.requests) == 1


def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = RemoteSettings(f"http://127.0.0.1:{port}/v1", KEY, "m", max_retries=2, backoff_s=0.001)
    with pytest.raises(ModelError, match="gave up after 3 attempts: connection failed"):
        RemoteClient(settings).complete(MESSAGES, [])


def test_an_error_inside_the_stream_is_reported(endpoint: Endpoint) -> None:
    endpoint.replies = [Reply(chunks=[delta(content="Par"), {"error": {"message": "KV cache full"}}])]
    with pytest.raises(ModelError, match=r"mid-stream.*KV cache full"):
        RemoteClient(endpoint.settings()).complete(MESSAGES, [])


def test_settings_come_from_flags_then_environment_then_defaults() -> None:
    env = {
        "CODEAGENT_BASE_URL": "http://codeagent.example/v1/",
        "OPENAI_BASE_URL": "http://openai.example/v1",
        "OPENAI_API_KEY": "sk-env",
        "OPENAI_MODEL": "gpt-env",
    }
    settings = RemoteSettings.from_env(env=env)
    assert (settings.base_url, settings.api_key, settings.model) == (
        "http://codeagent.example/v1",
        "sk-env",
        "gpt-env",
    )
    flagged = RemoteSettings.from_env("m1", "http://flag.example", "sk-flag", env=env, context_window=None)
    assert (flagged.base_url, flagged.api_key, flagged.model) == ("http://flag.example", "sk-flag", "m1")
    assert flagged.context_window == 128_000
    bare = RemoteSettings.from_env(env={"CODEAGENT_MODEL": "remote:qwen3-coder", "OPENAI_MODEL": "x"})
    assert (bare.base_url, bare.api_key, bare.model) == (
        OPENAI_COMPATIBLE.default_base_url,
        None,
        "qwen3-coder",
    )
    with pytest.raises(ModelError, match=r"no name.*remote:NAME"):
        RemoteSettings.from_env(env={"CODEAGENT_MODEL": "scripted:run.jsonl"})


def test_make_client_builds_remote_clients_and_rejects_unknown_specs(endpoint: Endpoint) -> None:
    client = make_client("remote:qwen3-coder", base_url=endpoint.url, api_key=KEY, context_window=32_000)
    assert client.name == "remote:qwen3-coder" and client.context_window == 32_000
    with pytest.raises(UnknownModelSpec, match="accepted here: scripted:FILE, anthropic:NAME, openai"):
        make_client("/models/Qwen3-Coder-30B")


def test_a_json_answer_without_choices_is_an_error_not_an_empty_message(endpoint: Endpoint) -> None:
    endpoint.replies = [Reply(body={"object": "chat.completion", "choices": []})]
    with pytest.raises(ModelError, match="answered without choices"):
        RemoteClient(endpoint.settings()).complete(MESSAGES, [])


def test_private_keys_are_not_sent_to_the_endpoint(endpoint: Endpoint) -> None:
    reply = {"role": "assistant", "content": "Reading.", "_raw": "<think>x</think>Reading.", "_note": 1}
    endpoint.replies = [OK]
    client = RemoteClient(endpoint.settings(stream=False))
    client.complete([*MESSAGES, reply, {"role": "user", "content": "go on"}], TOOLS)
    sent = endpoint.requests[0]["body"]["messages"]
    assert sent[-2] == {"role": "assistant", "content": "Reading."}
    assert "_raw" in reply  # the caller's message is left as it was
