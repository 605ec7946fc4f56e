"""DeepSeek, Ollama and ``local:URL``: OpenAI chat completions with each provider's defaults,
against a real HTTP server on 127.0.0.1 (the ``wire`` fixture)."""

from __future__ import annotations

from typing import Any

import pytest

from codeagent.agent.clients import UnknownModelSpec, make_client
from codeagent.agent.clients.settings import DEEPSEEK, OLLAMA, RemoteSettings
from codeagent.agent.protocol import ModelError

KEY = "sk-deepseek-secret-4242"


def chunk(**delta: Any) -> tuple[str, dict[str, Any]]:
    return "", {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


def answer(text: str, usage: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    return [
        chunk(content=text),
        ("", {"choices": [], "usage": usage or {"prompt_tokens": 5, "completion_tokens": 1}}),
    ]


def call(call_id: str) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "read_file", "arguments": '{"path": "a"}'},
    }


def test_deepseek_sends_back_the_reasoning_of_turns_that_called_tools(wire: Any) -> None:
    conversation = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hi.", "reasoning_content": "a greeting"},
        {"role": "user", "content": "what does stats.py do?"},
        {"role": "assistant", "content": "", "reasoning_content": "look", "tool_calls": [call("c1")]},
        {"role": "tool", "tool_call_id": "c1", "content": "def mean(): ..."},
        {"role": "assistant", "content": "It averages.", "reasoning_content": "got it"},
        {"role": "user", "content": "fix mean"},
        {"role": "assistant", "content": "", "tool_calls": [call("c2")]},  # written by another model
        {"role": "tool", "tool_call_id": "c2", "content": "def mean(): ..."},
    ]
    usage = {"prompt_tokens": 900, "completion_tokens": 20, "prompt_cache_hit_tokens": 768}
    wire.sse([chunk(reasoning_content="so "), chunk(reasoning_content="edit"), *answer("Editing.", usage)])
    client = make_client("deepseek:deepseek-reasoner", base_url=wire.url, api_key=KEY)
    completion = client.complete(conversation, [])
    assert completion.message["reasoning_content"] == "so edit" and completion.usage.cached_tokens == 768
    assert client.name == "deepseek:deepseek-reasoner"
    (request,) = wire.requests
    assert request["path"] == "/chat/completions" and request["headers"]["Authorization"] == f"Bearer {KEY}"
    sent = request["body"]["messages"]
    reasoning = [m.get("reasoning_content") for m in sent if m["role"] == "assistant"]
    # no tool call in the first turn: left out; the second called tools: kept, final answer too;
    # the current turn's call has no reasoning of its own: an empty one, as the API wants the field
    assert reasoning == [None, "look", "got it", ""]
    assert "reasoning_content" not in sent[2]
    assert "reasoning_content" not in conversation[8]  # the caller's messages are left as they were


def test_deepseek_defaults_and_errors(wire: Any) -> None:
    settings = RemoteSettings.from_env("deepseek-chat", env={"DEEPSEEK_API_KEY": "sk-d"}, provider=DEEPSEEK)
    assert (settings.base_url, settings.api_key) == ("https://api.deepseek.com", "sk-d")
    wire.json({"error": {"message": f"Authentication Fails, Your api key: {KEY} is invalid"}}, 401)
    with pytest.raises(ModelError) as caught:
        make_client("deepseek:deepseek-chat", base_url=wire.url, api_key=KEY).complete([], [])
    text = str(caught.value)
    assert KEY not in text and "HTTP 401" in text and "DEEPSEEK_API_KEY" in text


def test_ollama_needs_no_key(wire: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    assert RemoteSettings.from_env("qwen3", env={}, provider=OLLAMA).base_url == "http://127.0.0.1:11434/v1"
    wire.sse(answer("Hi."))
    client = make_client("ollama:qwen3-coder", base_url=f"{wire.url}/v1")
    assert client.complete([{"role": "user", "content": "hi"}], []).message["content"] == "Hi."
    assert client.name == "ollama:qwen3-coder"
    (request,) = wire.requests
    assert request["path"] == "/v1/chat/completions" and "Authorization" not in request["headers"]
    assert request["body"]["model"] == "qwen3-coder"


def test_local_asks_the_server_which_model_it_serves(wire: Any) -> None:
    wire.json({"object": "list", "data": [{"id": "Qwen/Qwen3-Coder-30B-A3B", "object": "model"}]})
    wire.sse(answer("Hi."))
    wire.sse(answer("Again."))
    client = make_client(f"local:{wire.url}/v1")
    assert client.name == f"local:{wire.url}/v1"
    client.complete([{"role": "user", "content": "hi"}], [])
    client.complete([{"role": "user", "content": "hi"}], [])
    assert [(r["path"], (r["body"] or {}).get("model")) for r in wire.requests] == [
        ("/v1/models", None),
        ("/v1/chat/completions", "Qwen/Qwen3-Coder-30B-A3B"),
        ("/v1/chat/completions", "Qwen/Qwen3-Coder-30B-A3B"),  # asked once
    ]
    assert "Authorization" not in wire.requests[1]["headers"]


def test_local_without_a_model_listing_uses_a_placeholder_name(wire: Any) -> None:
    wire.json({"error": "not found"}, 404)
    wire.sse(answer("Hi."))
    make_client(f"local:{wire.url}").complete([{"role": "user", "content": "hi"}], [])
    assert wire.bodies[1]["model"] == "default"


def test_unknown_specs_list_everything_accepted() -> None:
    with pytest.raises(UnknownModelSpec) as caught:
        make_client("gemini:pro")
    for spec in (
        "scripted:FILE",
        "anthropic:NAME",
        "openai:NAME",
        "deepseek:NAME",
        "ollama:NAME",
        "local:URL",
    ):
        assert spec in str(caught.value)
    assert "remote:NAME" in str(caught.value)
    with pytest.raises(UnknownModelSpec, match="local: needs a base URL"):
        make_client("local:")
