"""``POST /v1/messages`` and ``/v1/messages/count_tokens`` through the official ``anthropic``
client: whole and streamed messages, a tool round trip on scripted text, token counts that
match what a message bills, cached prompt tokens, and Anthropic-shaped errors."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest

from codeagent.backend.serving.server import OpenAIServer

KEY = "sk-serve-test-1234"
TOOLS = [
    {
        "name": "read_file",
        "description": "Read a file.",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "start_line": {"type": "integer"}},
            "required": ["path"],
        },
    }
]
SYSTEM = "You are a careful software engineer. Read the file, fix the bug, run the tests. " * 3
MESSAGES = [{"role": "user", "content": "Fix the mean."}]
CALL_TEXT = (
    "Let me look.\n<tool_call>\n<function=read_file>\n<parameter=path>\nstats.py\n</parameter>\n"
    "<parameter=start_line>\n3\n</parameter>\n</function>\n</tool_call>"
)


def client(server: OpenAIServer, key: str = "unused", **options: Any) -> anthropic.Anthropic:
    base = server.url.removesuffix("/v1")
    return anthropic.Anthropic(base_url=base, api_key=key, max_retries=0, timeout=60, **options)


def blocks(message: Any) -> list[dict[str, Any]]:
    return [block.model_dump(exclude={"parsed_output"}) for block in message.content]


# the real engine


def test_a_message_bills_what_count_tokens_counts_and_reports_the_cache(engine_server):
    server, _ = engine_server
    api = client(server)
    ask = dict(model="tiny", system=SYSTEM, messages=MESSAGES)
    counted = api.messages.count_tokens(**ask).input_tokens
    first = api.messages.create(**ask, max_tokens=4, extra_body={"temperature": 0})
    again = api.messages.create(**ask, max_tokens=4, extra_body={"temperature": 0})
    assert first.type == "message" and first.role == "assistant" and first.model == "tiny"
    assert 1 <= first.usage.output_tokens <= 4
    assert first.stop_reason == ("max_tokens" if first.usage.output_tokens == 4 else "end_turn")
    for message in (first, again):
        assert message.usage.input_tokens + message.usage.cache_read_input_tokens == counted
    assert again.usage.cache_read_input_tokens > 0  # the same prompt: its full blocks are cached
    assert again.usage.input_tokens == counted - again.usage.cache_read_input_tokens
    assert [block.text for block in again.content] == [block.text for block in first.content]  # greedy


def test_a_streamed_message_matches_the_whole_one(engine_server):
    server, _ = engine_server
    api = client(server)
    ask = dict(model="tiny", system=SYSTEM, messages=MESSAGES, max_tokens=6, extra_body={"temperature": 0})
    whole = api.messages.create(**ask)
    with api.messages.stream(**ask) as stream:
        kinds = [event.type for event in stream]
        streamed = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "message_delta" in kinds
    assert blocks(streamed) == blocks(whole) and streamed.stop_reason == whole.stop_reason
    assert streamed.usage.output_tokens == whole.usage.output_tokens
    total = streamed.usage.input_tokens + streamed.usage.cache_read_input_tokens
    assert total == whole.usage.input_tokens + whole.usage.cache_read_input_tokens


# scripted text


def test_a_tool_round_trip_extends_the_prompt_token_for_token(scripted, chat_model):
    server, service = scripted(CALL_TEXT)
    api = client(server)
    reply = api.messages.create(model="tiny", system=SYSTEM, messages=MESSAGES, tools=TOOLS, max_tokens=200)
    assert reply.stop_reason == "tool_use"
    text, call = reply.content
    assert text.type == "text" and text.text == "Let me look."
    assert call.type == "tool_use" and call.name == "read_file"
    assert call.input == {"path": "stats.py", "start_line": 3}
    result = {
        "type": "tool_result",
        "tool_use_id": call.id,
        "content": [{"type": "text", "text": "no such file"}],
        "is_error": True,
    }
    follow_up = [
        *MESSAGES,
        {"role": "assistant", "content": [block.model_dump() for block in reply.content]},
        {"role": "user", "content": [result]},
    ]
    api.messages.create(model="tiny", system=SYSTEM, messages=follow_up, tools=TOOLS, max_tokens=200)
    first, second = service.prompts
    written = service.streams[0].result.token_ids[:-1]  # the reply, without its end of turn
    assert second[: len(first) + len(written)] == first + written
    assert "Error: no such file" in chat_model.tokenizer.decode(second[len(first) :])


def test_a_streamed_tool_call_arrives_as_one_input_json_delta(scripted):
    server, _ = scripted(CALL_TEXT)
    with client(server).messages.stream(
        model="tiny", messages=MESSAGES, tools=TOOLS, max_tokens=200, tool_choice={"type": "auto"}
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    deltas = [e.delta for e in events if e.type == "content_block_delta"]
    assert [d.type for d in deltas if d.type == "input_json_delta"] == ["input_json_delta"]
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["text", "tool_use"]
    assert final.stop_reason == "tool_use" and final.content[1].input == {"path": "stats.py", "start_line": 3}


def test_thinking_comes_back_as_a_thinking_block(scripted):
    server, _ = scripted("<think>\nCheck the divisor.\n</think>\n\nIt divides by n - 1.")
    api = client(server)
    ask = dict(
        model="tiny", messages=MESSAGES, max_tokens=100, thinking={"type": "enabled", "budget_tokens": 1024}
    )
    reply = api.messages.create(**ask)
    assert [block.type for block in reply.content] == ["thinking", "text"]
    assert (
        reply.content[0].thinking == "Check the divisor." and reply.content[1].text == "It divides by n - 1."
    )
    with api.messages.stream(**ask) as stream:
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
        assert blocks(stream.get_final_message()) == blocks(reply)
    assert kinds[0] == "thinking_delta" and kinds[-1] == "text_delta"


def test_stop_sequences_report_which_one_matched(scripted):
    server, _ = scripted("alpha beta gamma")
    reply = client(server).messages.create(
        model="tiny", messages=MESSAGES, max_tokens=50, stop_sequences=["gam", "zeta"]
    )
    assert reply.stop_reason == "stop_sequence" and reply.stop_sequence == "gam"
    assert reply.content[0].text == "alpha beta "


# errors and keys


def post(server: OpenAIServer, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **(headers or {})}
    return httpx.post(server.url + path, content=raw, headers=headers, timeout=30)


def test_the_api_key_is_taken_from_x_api_key_or_bearer(scripted):
    server, _ = scripted("fine", api_key=KEY)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client(server, "wrong").messages.create(model="tiny", messages=MESSAGES, max_tokens=5)
    assert caught.value.body["error"]["type"] == "authentication_error"
    assert (
        client(server, KEY).messages.create(model="tiny", messages=MESSAGES, max_tokens=5).content[0].text
        == "fine"
    )
    bearer = anthropic.Anthropic(base_url=server.url.removesuffix("/v1"), auth_token=KEY, max_retries=0)
    assert bearer.messages.count_tokens(model="tiny", messages=MESSAGES).input_tokens > 0


def test_bad_requests_are_anthropic_shaped_errors(scripted):
    server, service = scripted("fine")
    api = client(server)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}
    cases = [
        (anthropic.BadRequestError, dict(messages=MESSAGES, max_tokens=5, extra_body={"temperature": 1.5})),
        (anthropic.BadRequestError, dict(messages=[{"role": "user", "content": [image]}], max_tokens=5)),
        (anthropic.BadRequestError, dict(messages=MESSAGES, max_tokens=0)),
        (
            anthropic.BadRequestError,
            dict(messages=[*MESSAGES, {"role": "assistant", "content": "It"}], max_tokens=5),
        ),
        (anthropic.BadRequestError, dict(messages=MESSAGES, max_tokens=5, tool_choice={"type": "any"})),
        (anthropic.BadRequestError, dict(messages=MESSAGES, max_tokens=5, extra_body={"mcp_servers": [{}]})),
        (
            anthropic.BadRequestError,
            dict(
                messages=MESSAGES,
                max_tokens=5,
                extra_body={"output_config": {"format": {"type": "xml"}}},
            ),
        ),
        (
            anthropic.BadRequestError,
            dict(
                messages=MESSAGES, max_tokens=5, tools=[{"type": "web_search_20250305", "name": "web_search"}]
            ),
        ),
        (anthropic.NotFoundError, dict(messages=MESSAGES, max_tokens=5, model="claude-9")),
    ]
    for error, ask in cases:
        with pytest.raises(error) as caught:
            api.messages.create(**{"model": "tiny", **ask})
        assert caught.value.body["type"] == "error" and caught.value.body["error"]["message"], ask
    for raw in (b"{not json", json.dumps({"model": "tiny", "messages": MESSAGES}).encode()):
        response = post(server, "/messages", raw)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert service.prompts == []  # nothing malformed reached the engine
    unknown = api.messages.create(model="tiny", messages=MESSAGES, max_tokens=5, extra_body={"future": 1})
    assert unknown.content[0].text == "fine"  # fields we do not know are ignored, as beta fields


def test_an_engine_failure_mid_stream_is_an_error_event(scripted):
    server, _ = scripted("half an answer", error="the engine failed: RuntimeError: out of memory")
    api = client(server)
    with pytest.raises(anthropic.InternalServerError):
        api.messages.create(model="tiny", messages=MESSAGES, max_tokens=50)
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        api.messages.stream(model="tiny", messages=MESSAGES, max_tokens=50) as stream,
    ):
        for _ in stream:
            pass
    assert "out of memory" in str(caught.value)


def test_thinking_disabled_reaches_the_template(scripted, chat_model):
    server, _ = scripted("fine")
    api = client(server)
    counts = {
        kind: api.messages.count_tokens(model="tiny", messages=MESSAGES, thinking=thinking).input_tokens
        for kind, thinking in [
            ("enabled", {"type": "enabled", "budget_tokens": 1024}),
            ("disabled", {"type": "disabled"}),
        ]
    }
    closed = len(chat_model.tokenizer.encode("<think>\n\n</think>\n\n"))
    assert counts["disabled"] == counts["enabled"] + closed  # the template closes an empty think block


def test_a_system_message_among_the_messages_is_rendered_where_it_stands(scripted, chat_model):
    """Claude Code (2.1) sends its agent list as a ``system`` message after the first user turn."""
    server, service = scripted("fine")
    api = client(server)
    listed = [*MESSAGES, {"role": "system", "content": "Agents: Explore."}]
    reply = api.messages.create(model="tiny", system=SYSTEM, messages=listed, max_tokens=5)
    assert reply.content[0].text == "fine"
    shown = chat_model.tokenizer.decode(service.prompts[0])
    assert shown.index("Fix the mean.") < shown.index("<|im_start|>system\nAgents: Explore.<|im_end|>")


def test_claude_codes_billing_header_never_reaches_the_prompt(scripted, chat_model):
    """Its hash differs per session right at the prompt's start: left in, no session would
    reuse another's cached instructions and tools."""
    server, service = scripted("fine")
    api = client(server)
    for suffix in ("90a", "3d9"):
        header = f"x-anthropic-billing-header: cc_version=2.1.197.{suffix}; cc_entrypoint=sdk-cli;"
        system = [{"type": "text", "text": header}, {"type": "text", "text": SYSTEM}]
        api.messages.create(model="tiny", system=system, messages=MESSAGES, max_tokens=5)
    api.messages.create(model="tiny", system=f"{header}\n{SYSTEM}", messages=MESSAGES, max_tokens=5)
    first, second, inline = (chat_model.tokenizer.decode(ids) for ids in service.prompts)
    assert first == second == inline and "billing" not in first and SYSTEM in first
