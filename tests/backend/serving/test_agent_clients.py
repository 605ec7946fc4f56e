"""The agent's own Anthropic Messages and OpenAI Responses clients against ``codeagent serve``:
a tool-using turn and its follow-up through each protocol (the follow-up's prompt extends the
first prompt and the reply token for token), and the engine's cached prompt tokens reaching
the agent's usage."""

from __future__ import annotations

from typing import Any

import pytest

from codeagent.agent.clients.anthropic import AnthropicClient
from codeagent.agent.clients.responses import ResponsesClient
from codeagent.agent.clients.settings import RemoteSettings
from codeagent.backend.serving.server import OpenAIServer

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "start_line": {"type": "integer"}},
                "required": ["path"],
            },
        },
    }
]
SYSTEM = "You are a careful software engineer. Read the file, fix the bug, run the tests. " * 3
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Fix the mean."}]
CALL_TEXT = (
    "Let me look.\n<tool_call>\n<function=read_file>\n<parameter=path>\nstats.py\n</parameter>\n"
    "<parameter=start_line>\n3\n</parameter>\n</function>\n</tool_call>"
)


def anthropic_client(server: OpenAIServer, **options: Any) -> AnthropicClient:
    base = server.url.removesuffix("/v1")
    return AnthropicClient(RemoteSettings(base, "key", "tiny", max_retries=0, **options))


def responses_client(server: OpenAIServer, **options: Any) -> ResponsesClient:
    return ResponsesClient(RemoteSettings(server.url, "key", "tiny", max_retries=0, **options))


@pytest.mark.parametrize("make", [anthropic_client, responses_client])
def test_a_tool_turn_and_its_follow_up(scripted, make):
    server, service = scripted(CALL_TEXT)
    client = make(server)
    streamed: list[str] = []
    first = client.complete(MESSAGES, TOOLS, on_token=streamed.append)
    assert first.finish_reason == "tool_calls" and first.message["content"] == "Let me look."
    assert "".join(streamed) == "Let me look."
    (call,) = first.message["tool_calls"]
    assert call["function"]["name"] == "read_file"
    result = {"role": "tool", "tool_call_id": call["id"], "content": "def mean"}
    client.complete([*MESSAGES, first.message, result], TOOLS)
    client.close()
    before, after = service.prompts
    written = service.streams[0].result.token_ids[:-1]  # the reply, without its end of turn
    assert after[: len(before) + len(written)] == before + written


@pytest.mark.parametrize("make", [anthropic_client, responses_client])
def test_cached_prompt_tokens_reach_the_agents_usage(engine_server, make):
    server, _ = engine_server
    client = make(server, max_tokens=3, temperature=0.0)
    first = client.complete(MESSAGES, TOOLS)
    again = client.complete(MESSAGES, TOOLS)
    client.close()
    assert again.usage.prompt_tokens == first.usage.prompt_tokens > 0
    assert 0 < again.usage.cached_tokens < again.usage.prompt_tokens
    assert 1 <= again.usage.completion_tokens <= 3


@pytest.mark.parametrize("make", [anthropic_client, responses_client])
def test_reasoning_goes_back_as_it_came(scripted, make):
    server, service = scripted("<think>\nCheck the divisor.\n</think>\n\nIt divides by n - 1.")
    client = make(server)
    first = client.complete(MESSAGES, TOOLS)
    assert first.message["content"] == "It divides by n - 1."
    # the server sends reasoning as the item's reasoning_text content; the agent's Responses
    # client reads only summaries, but replays the items, so the next prompt still extends
    if make is anthropic_client:
        assert first.message["reasoning_content"] == "Check the divisor."
    client.complete([*MESSAGES, first.message, {"role": "user", "content": "And?"}], TOOLS)
    client.close()
    before, after = service.prompts
    written = service.streams[0].result.token_ids[:-1]
    assert after[: len(before) + len(written)] == before + written
