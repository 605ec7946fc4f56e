"""The Anthropic Messages client against a real HTTP server on 127.0.0.1 (the ``wire``
fixture) that streams events as Anthropic documents them, and through the agent loop."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from codeagent.agent.clients import make_client
from codeagent.agent.clients.anthropic import AnthropicClient
from codeagent.agent.clients.settings import ANTHROPIC, RemoteSettings
from codeagent.agent.loop import Limits
from codeagent.agent.protocol import ModelError
from codeagent.agent.session import SessionSpec, new_agent
from codeagent.tools.base import ToolEnv

KEY = "sk-ant-test-secret-4242"
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "fix the bug"}]
TOOLS = [
    {
        "type": "function",
        "function": {"name": "read_file", "description": "read", "parameters": {"type": "object"}},
    }
]
SIGNATURE = "EqQBCkYIARgCIkD" + "x" * 40


def client(wire: Any, **options: Any) -> AnthropicClient:
    settings = RemoteSettings(wire.url, KEY, "claude-test", **{"backoff_s": 0.001, **options})
    return AnthropicClient(settings)


def reply_events(blocks: list[list[tuple[str, dict]]], stop: str, usage: dict | None = None) -> list:
    """A whole streamed reply: ``blocks`` are each (block start, its deltas...)."""
    start_usage = {"input_tokens": 12, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 200}
    events: list = [
        (
            "message_start",
            {"type": "message_start", "message": message(usage=start_usage | {"output_tokens": 1})},
        )
    ]
    for index, (start, *deltas) in enumerate(blocks):
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
        )
        events.append(("ping", {"type": "ping"}))
        for delta in deltas:
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    final = {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": usage or {"output_tokens": 55}}
    return [*events, ("message_delta", final), ("message_stop", {"type": "message_stop"})]


def message(**fields: Any) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [],
        **fields,
    }


def thinking(text: str) -> list:
    return [
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "thinking_delta", "thinking": text[:5]},
        {"type": "thinking_delta", "thinking": text[5:]},
        {"type": "signature_delta", "signature": SIGNATURE},
    ]


def text(words: str) -> list:
    return [{"type": "text", "text": ""}, *({"type": "text_delta", "text": w} for w in words.split("|"))]


def tool_use(call_id: str, name: str, *pieces: str) -> list:
    start = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
    return [start, *({"type": "input_json_delta", "partial_json": piece} for piece in pieces)]


def test_a_streamed_reply_with_thinking_text_and_split_tool_input(wire: Any) -> None:
    blocks = [
        thinking("The mean divides by n-1."),
        text("Let me |read it."),
        tool_use("toolu_01", "read_file", "", '{"pa', 'th": "sta', 'ts.py"}'),
    ]
    wire.sse(reply_events(blocks, "tool_use"), split=True)
    tokens: list[str] = []
    completion = client(wire).complete(MESSAGES, TOOLS, on_token=tokens.append)
    message = completion.message
    assert message["content"] == "Let me read it."
    assert message["reasoning_content"] == "The mean divides by n-1."
    (call,) = message["tool_calls"]
    assert (call["id"], call["type"], call["function"]["name"]) == ("toolu_01", "function", "read_file")
    assert json.loads(call["function"]["arguments"]) == {"path": "stats.py"}
    replay = message["_replay"]["anthropic"]
    assert replay[0] == {"type": "thinking", "thinking": "The mean divides by n-1.", "signature": SIGNATURE}
    assert [b["type"] for b in replay] == ["thinking", "text", "tool_use"]
    assert completion.finish_reason == "tool_calls"
    assert completion.usage.as_dict() == {
        "prompt_tokens": 1212,  # Anthropic's input_tokens leaves out the cached tokens
        "completion_tokens": 55,
        "cached_tokens": 1000,
        "cache_creation_tokens": 200,
    }
    assert [t for t in tokens if t] == ["Let me ", "read it."] and "" in tokens
    (request,) = wire.requests
    assert request["path"] == "/v1/messages"
    assert request["headers"]["x-api-key"] == KEY and request["headers"]["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in request["headers"]
    body = request["body"]
    assert body["model"] == "claude-test" and body["stream"] is True and body["max_tokens"] == 8192
    assert body["system"] == [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}]
    assert body["tools"] == [{"name": "read_file", "input_schema": {"type": "object"}, "description": "read"}]
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "fix the bug", "cache_control": {"type": "ephemeral"}}],
        }
    ]


def test_thinking_blocks_go_back_unchanged_through_the_agent_loop(wire: Any, make_repo: Any) -> None:
    root = make_repo()
    wire.sse(
        reply_events(
            [thinking("Read it first."), tool_use("toolu_1", "read_file", '{"path": "stats.py"}')], "tool_use"
        )
    )
    finish = tool_use("toolu_2", "finish", '{"summary": "nothing to change"}')
    wire.sse(reply_events([thinking("It is fine."), finish], "tool_use"))
    spec = SessionSpec(client(wire, thinking_budget=2048), ToolEnv(root), Limits(), None, repo_map=False)
    result = new_agent(spec, "fix mean").run()
    assert result.status == "finished" and result.summary == "nothing to change"
    first, second = wire.bodies
    assert first["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert first["max_tokens"] == 8192 + 2048 and "temperature" not in first
    assistant, results = second["messages"][1], second["messages"][2]
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Read it first.", "signature": SIGNATURE},
            {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "stats.py"}},
        ],
    }
    (result_block,) = results["content"]
    assert result_block["type"] == "tool_result" and result_block["tool_use_id"] == "toolu_1"
    assert "def mean" in result_block["content"]
    # cache breakpoints: the end of the pinned prefix (system) and the latest turn, nothing else
    assert second["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert result_block["cache_control"] == {"type": "ephemeral"}
    assert json.dumps(second).count("cache_control") == 2


def test_messages_map_to_blocks_with_results_merged_after_their_calls(wire: Any) -> None:
    call = {
        "id": "call.1",
        "type": "function",
        "function": {"name": "read_file", "arguments": '{"path": "a"}'},
    }
    conversation = [
        *MESSAGES,
        {"role": "assistant", "content": "", "tool_calls": [call], "reasoning_content": "from another model"},
        {"role": "tool", "tool_call_id": "call.1", "content": "x = 1"},
        {"role": "user", "content": "and now?"},
    ]
    wire.sse(reply_events([text("Done.")], "end_turn"))
    completion = client(wire, temperature=0.3).complete(conversation, [])
    assert (
        completion.message == {"role": "assistant", "content": "Done."} and completion.finish_reason == "stop"
    )
    body = wire.bodies[0]
    assert body["temperature"] == 0.3 and "tools" not in body
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "call_1", "name": "read_file", "input": {"path": "a"}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "x = 1"},
                {"type": "text", "text": "and now?", "cache_control": {"type": "ephemeral"}},
            ],
        },
    ]


def test_a_json_answer_is_read_when_streaming_is_off(wire: Any) -> None:
    usage = {
        "input_tokens": 7,
        "output_tokens": 3,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    wire.json(message(content=[{"type": "text", "text": "Hi."}], stop_reason="max_tokens", usage=usage))
    completion = client(wire, stream=False).complete(MESSAGES, [])
    assert (
        completion.message == {"role": "assistant", "content": "Hi."} and completion.finish_reason == "length"
    )
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 3)
    assert "stream" not in wire.bodies[0]


def test_429_waits_for_the_exhausted_limits_reset_then_succeeds(wire: Any) -> None:
    reset = (datetime.now(UTC) + timedelta(seconds=1.2)).isoformat()
    headers = {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-tokens-remaining": "90000",
        "anthropic-ratelimit-tokens-reset": (datetime.now(UTC) + timedelta(seconds=30)).isoformat(),
    }
    wire.json({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}, 429, headers)
    wire.sse(reply_events([text("ok")], "end_turn"))
    started = time.monotonic()
    completion = client(wire).complete(MESSAGES, [])
    waited = time.monotonic() - started
    assert completion.message["content"] == "ok" and len(wire.requests) == 2
    assert 0.7 <= waited < 10  # the requests limit's reset, not the tokens' (which has room left)


def test_overloaded_529_is_retried_and_reported_when_it_persists(wire: Any) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    for _ in range(3):
        wire.json(overloaded, 529)
    with pytest.raises(ModelError) as caught:
        client(wire, max_retries=2).complete(MESSAGES, [])
    assert "gave up after 3 attempts: HTTP 529: Overloaded" in str(caught.value) and len(wire.requests) == 3


def test_bad_key_is_one_line_without_the_key(wire: Any) -> None:
    error = {
        "type": "error",
        "error": {"type": "authentication_error", "message": f"invalid x-api-key\n{KEY}"},
    }
    wire.json(error, 401)
    with pytest.raises(ModelError) as caught:
        client(wire).complete(MESSAGES, [])
    text = str(caught.value)
    assert KEY not in text and "\n" not in text
    assert "HTTP 401: invalid x-api-key ***" in text and "ANTHROPIC_API_KEY" in text
    assert len(wire.requests) == 1


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (404, "model: claude-nope", r"HTTP 404: model: claude-nope \(check the model name"),
        (400, "prompt is too long: 210000 tokens > 200000 maximum", r"HTTP 400: prompt is too long: 210000"),
    ],
)
def test_client_errors_fail_at_once_with_the_providers_message(
    wire: Any, status: int, message: str, expected: str
) -> None:
    wire.json({"type": "error", "error": {"type": "invalid_request_error", "message": message}}, status)
    with pytest.raises(ModelError, match=expected):
        client(wire).complete(MESSAGES, [])
    assert len(wire.requests) == 1


def test_a_stream_that_ends_with_an_error_event(wire: Any) -> None:
    events = reply_events([text("Par|tial")], "end_turn")[:5]
    error = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad thinking signature"}}
    wire.sse([*events, ("error", error)])
    with pytest.raises(ModelError, match="mid-stream: invalid_request_error: bad thinking signature"):
        client(wire).complete(MESSAGES, [])
    assert len(wire.requests) == 1


def test_an_overloaded_error_event_or_a_cut_stream_is_retried(wire: Any) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    wire.sse([reply_events([], "end_turn")[0], ("error", overloaded)])
    wire.sse(reply_events([text("Hal|f")], "end_turn")[:4])  # no message_stop: the stream broke off
    wire.sse(reply_events([text("Whole.")], "end_turn"))
    completion = client(wire).complete(MESSAGES, [])
    assert completion.message["content"] == "Whole." and len(wire.requests) == 3


def test_make_client_and_the_environment(wire: Any) -> None:
    made = make_client("anthropic:claude-sonnet-4-5", base_url=wire.url, api_key=KEY, context_window=200_000)
    assert made.name == "anthropic:claude-sonnet-4-5" and made.context_window == 200_000
    env = {
        "ANTHROPIC_API_KEY": "sk-env",
        "ANTHROPIC_BASE_URL": "http://proxy.example/",
        "OPENAI_API_KEY": "x",
    }
    settings = RemoteSettings.from_env("claude-x", env=env, provider=ANTHROPIC)
    assert (settings.base_url, settings.api_key) == ("http://proxy.example", "sk-env")
    bare = RemoteSettings.from_env("claude-x", env={"OPENAI_API_KEY": "sk-openai"}, provider=ANTHROPIC)
    assert (bare.base_url, bare.api_key) == ("https://api.anthropic.com", None)  # no other provider's key
    with pytest.raises(ModelError, match="use --model anthropic:NAME"):
        RemoteSettings.from_env(env={}, provider=ANTHROPIC)
