"""The OpenAI Responses client against a real HTTP server on 127.0.0.1 (the ``wire``
fixture) that streams events as OpenAI documents them, and through the agent loop."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from codeagent.agent.clients import make_client
from codeagent.agent.clients.responses import ResponsesClient
from codeagent.agent.clients.settings import OPENAI, RemoteSettings
from codeagent.agent.loop import Limits
from codeagent.agent.protocol import ModelError
from codeagent.agent.session import SessionSpec, new_agent
from codeagent.tools.base import ToolEnv

KEY = "sk-proj-test-secret-4242"
MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "fix the bug"}]
TOOLS = [
    {
        "type": "function",
        "function": {"name": "read_file", "description": "read", "parameters": {"type": "object"}},
    }
]
USAGE = {"input_tokens": 1300, "input_tokens_details": {"cached_tokens": 1024}, "output_tokens": 40}


def client(wire: Any, model: str = "gpt-5", **options: Any) -> ResponsesClient:
    settings = RemoteSettings(f"{wire.url}/v1", KEY, model, **{"backoff_s": 0.001, **options})
    return ResponsesClient(settings)


def reasoning(number: int, summary: str) -> dict[str, Any]:
    return {
        "type": "reasoning",
        "id": f"rs_{number}",
        "summary": [{"type": "summary_text", "text": summary}],
        "encrypted_content": f"gAAAAB-encrypted-{number}",
    }


def function_call(number: int, name: str, arguments: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{number}",
        "call_id": f"call_{number}",
        "name": name,
        "arguments": arguments,
        "status": "completed",
    }


def stream(items: list[dict[str, Any]], pieces: dict[int, list[str]], usage: dict | None = None) -> list:
    """Events for a response whose output is ``items``; ``pieces`` split a message's text or a
    call's arguments into deltas, by output index."""
    events: list = [
        ("response.created", {"type": "response.created", "response": {"id": "resp_1", "output": []}})
    ]
    for index, item in enumerate(items):
        opened = {**item, "arguments": ""} if item["type"] == "function_call" else item
        if item["type"] == "message":
            opened = {**item, "content": []}
        events.append(
            (
                "response.output_item.added",
                {"type": "response.output_item.added", "output_index": index, "item": opened},
            )
        )
        kind = "output_text" if item["type"] == "message" else "function_call_arguments"
        for piece in pieces.get(index, []):
            payload = {
                "type": f"response.{kind}.delta",
                "output_index": index,
                "content_index": 0,
                "delta": piece,
            }
            events.append((payload["type"], payload))
        events.append(
            (
                "response.output_item.done",
                {"type": "response.output_item.done", "output_index": index, "item": item},
            )
        )
    done = {"id": "resp_1", "status": "completed", "output": items, "usage": usage or USAGE}
    return [*events, ("response.completed", {"type": "response.completed", "response": done})]


def said(text: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}]
    return {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": content}


def test_a_streamed_response_with_reasoning_text_and_split_call_arguments(wire: Any) -> None:
    items = [
        reasoning(1, "Check stats.py."),
        said("Reading it."),
        function_call(1, "read_file", '{"path": "stats.py"}'),
    ]
    wire.sse(stream(items, {1: ["Read", "ing it."], 2: ['{"pa', 'th": "stats', '.py"}']}), split=True)
    tokens: list[str] = []
    completion = client(wire).complete(MESSAGES, TOOLS, on_token=tokens.append)
    message = completion.message
    assert message["content"] == "Reading it." and message["reasoning_content"] == "Check stats.py."
    (call,) = message["tool_calls"]
    assert (call["id"], call["function"]["name"]) == ("call_1", "read_file")
    assert json.loads(call["function"]["arguments"]) == {"path": "stats.py"}
    assert message["_replay"] == {"openai-responses": items}
    assert completion.finish_reason == "tool_calls"
    assert completion.usage.as_dict() == {
        "prompt_tokens": 1300,
        "completion_tokens": 40,
        "cached_tokens": 1024,
        "cache_creation_tokens": 0,
    }
    assert [t for t in tokens if t] == ["Read", "ing it."]
    (request,) = wire.requests
    assert request["path"] == "/v1/responses" and request["headers"]["Authorization"] == f"Bearer {KEY}"
    body = request["body"]
    assert body["store"] is False and body["stream"] is True and "previous_response_id" not in body
    assert body["include"] == ["reasoning.encrypted_content"]
    assert body["instructions"] == "be brief"
    assert body["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix the bug"}]}
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "name": "read_file",
            "parameters": {"type": "object"},
            "strict": False,
            "description": "read",
        }
    ]


def test_reasoning_items_go_back_with_their_encrypted_content_through_the_agent_loop(
    wire: Any, make_repo: Any
) -> None:
    root = make_repo()
    first = [reasoning(1, "Read first."), function_call(1, "read_file", '{"path": "stats.py"}')]
    wire.sse(stream(first, {}))
    wire.sse(stream([function_call(2, "finish", '{"summary": "fine as it is"}')], {}))
    spec = SessionSpec(client(wire), ToolEnv(root), Limits(), None, repo_map=False)
    result = new_agent(spec, "fix mean").run()
    assert result.status == "finished" and result.summary == "fine as it is"
    _, second = wire.bodies
    replayed, output = second["input"][1:3], second["input"][3]
    # as the API gave them, encrypted_content included, but without the ids of items it did not store
    assert replayed == [{k: v for k, v in item.items() if k != "id"} for item in first]
    assert replayed[0]["encrypted_content"] == "gAAAAB-encrypted-1" and replayed[1]["call_id"] == "call_1"
    assert output["type"] == "function_call_output" and output["call_id"] == "call_1"
    assert "def mean" in output["output"]


def test_messages_without_replay_are_rebuilt_as_items(wire: Any) -> None:
    call = {
        "id": "call_9",
        "type": "function",
        "function": {"name": "read_file", "arguments": '{"path": "a"}'},
    }
    conversation = [
        *MESSAGES,
        {"role": "assistant", "content": "Looking.", "tool_calls": [call], "reasoning_content": "elsewhere"},
        {"role": "tool", "tool_call_id": "call_9", "content": "x = 1"},
        {"role": "system", "content": "two steps left"},
    ]
    wire.sse(stream([said("Done.")], {0: ["Done."]}))
    completion = client(wire, model="gpt-4.1", max_tokens=256, temperature=0.1).complete(conversation, [])
    assert (
        completion.message == {"role": "assistant", "content": "Done."} and completion.finish_reason == "stop"
    )
    body = wire.bodies[0]
    assert "include" not in body and "reasoning" not in body  # not a reasoning model
    assert (body["max_output_tokens"], body["temperature"]) == (256, 0.1)
    assert body["input"][1:] == [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
        {"type": "function_call", "call_id": "call_9", "name": "read_file", "arguments": '{"path": "a"}'},
        {"type": "function_call_output", "call_id": "call_9", "output": "x = 1"},
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "two steps left"}],
        },
    ]


def test_an_incomplete_response_and_a_json_answer(wire: Any) -> None:
    events = stream([said("Cut")], {0: ["Cut"]})
    done = events[-1][1]["response"] | {
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
    }
    wire.sse([*events[:-1], ("response.incomplete", {"type": "response.incomplete", "response": done})])
    assert client(wire).complete(MESSAGES, []).finish_reason == "length"
    wire.json({"id": "resp_2", "status": "completed", "output": [said("Whole.")], "usage": USAGE})
    completion = client(wire, stream=False, reasoning_effort="high").complete(MESSAGES, [])
    assert completion.message["content"] == "Whole." and completion.usage.cached_tokens == 1024
    assert wire.bodies[1]["reasoning"] == {"effort": "high"} and "stream" not in wire.bodies[1]


def test_raw_reasoning_text_content_is_read_as_reasoning(wire: Any) -> None:
    """Open-weight servers (``codeagent serve``) send the model's reasoning as ``reasoning_text``
    content and no summary; a summary is read only where no raw text came."""
    raw = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "short"}],
        "content": [{"type": "reasoning_text", "text": "The mean divides by zero."}],
    }
    wire.sse(stream([raw, said("Fixed.")], {1: ["Fixed."]}))
    message = client(wire, model="qwen3-coder").complete(MESSAGES, []).message
    assert message["reasoning_content"] == "The mean divides by zero." and message["content"] == "Fixed."
    wire.json({"id": "resp_2", "status": "completed", "output": [reasoning(2, "Summed.")], "usage": USAGE})
    assert client(wire, stream=False).complete(MESSAGES, []).message["reasoning_content"] == "Summed."


def test_a_failed_response_and_an_error_event_end_the_reply(wire: Any) -> None:
    failed = {"id": "r", "status": "failed", "error": {"code": "invalid_prompt", "message": "flagged"}}
    wire.sse([("response.failed", {"type": "response.failed", "response": failed})])
    with pytest.raises(ModelError, match="invalid_prompt: flagged"):
        client(wire).complete(MESSAGES, [])
    start = stream([said("Par")], {0: ["Par"]})[:3]
    wire.sse([*start, ("error", {"type": "error", "code": "context_length_exceeded", "message": "too long"})])
    with pytest.raises(ModelError, match="context_length_exceeded: too long"):
        client(wire).complete(MESSAGES, [])
    assert len(wire.requests) == 2  # neither was retried


def test_429_waits_for_the_reset_of_the_exhausted_limit(wire: Any) -> None:
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}
    wire.json({"error": {"message": "Rate limit reached", "type": "requests"}}, 429, headers)
    wire.sse(stream([said("ok")], {0: ["ok"]}))
    started = time.monotonic()
    assert client(wire).complete(MESSAGES, []).message["content"] == "ok"
    assert time.monotonic() - started >= 0.9 and len(wire.requests) == 2


def test_bad_key_and_unknown_model_are_one_line_without_the_key(wire: Any) -> None:
    wire.json({"error": {"message": f"Incorrect API key provided: {KEY}.", "code": "invalid_api_key"}}, 401)
    with pytest.raises(ModelError) as caught:
        client(wire).complete(MESSAGES, [])
    assert (
        KEY not in str(caught.value)
        and "HTTP 401" in str(caught.value)
        and "OPENAI_API_KEY" in str(caught.value)
    )
    wire.json({"error": {"message": "The model `gpt-9` does not exist", "code": "model_not_found"}}, 404)
    with pytest.raises(
        ModelError, match=r"HTTP 404: The model `gpt-9` does not exist \(check the model name"
    ):
        client(wire).complete(MESSAGES, [])


def test_make_client_and_the_environment(wire: Any) -> None:
    made = make_client("openai:gpt-5", base_url=f"{wire.url}/v1", api_key=KEY)
    assert made.name == "openai:gpt-5"
    env = {
        "OPENAI_API_KEY": "sk-env",
        "OPENAI_MODEL": "gpt-5-mini",
        "CODEAGENT_BASE_URL": "http://vllm.example/v1",
    }
    settings = RemoteSettings.from_env(env=env, provider=OPENAI)
    assert (settings.base_url, settings.api_key, settings.model) == (
        "https://api.openai.com/v1",
        "sk-env",
        "gpt-5-mini",
    )
    assert (
        RemoteSettings.from_env(env={"CODEAGENT_MODEL": "openai:o4-mini"}, provider=OPENAI).model == "o4-mini"
    )
