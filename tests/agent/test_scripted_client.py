"""The scripted model: replies in order, strict loading, exhaustion, and resuming mid-script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeagent.agent.clients import UnknownModelSpec, make_client
from codeagent.agent.clients.scripted import ScriptedClient
from codeagent.agent.protocol import ModelError, ScriptExhausted

MESSAGES = [{"role": "user", "content": "fix the failing test in stats.py"}]
CALL = {
    "id": "c1",
    "type": "function",
    "function": {"name": "read_file", "arguments": '{"path": "stats.py"}'},
}


def write(tmp_path: Path, *lines: str, name: str = "run.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def reply(content: str = "", *calls: dict) -> str:
    return json.dumps({"content": content, **({"tool_calls": list(calls)} if calls else {})})


def test_replies_come_back_in_order_then_the_script_is_exhausted(tmp_path: Path) -> None:
    path = write(tmp_path, reply("Reading the file.", CALL), "", reply("Fixed."), "   ")
    client = ScriptedClient(path)
    assert client.name == "scripted:run.jsonl" and client.context_window == 128_000
    first = client.complete(MESSAGES, [])
    assert first.message == {"role": "assistant", "content": "Reading the file.", "tool_calls": [CALL]}
    assert first.finish_reason == "tool_calls"
    second = client.complete(MESSAGES, [])
    assert second.message == {"role": "assistant", "content": "Fixed."} and second.finish_reason == "stop"
    assert client.consumed == 2 and client.remaining == 0
    with pytest.raises(ScriptExhausted, match=r"run\.jsonl has no reply left: all 2 were used"):
        client.complete(MESSAGES, [])


def test_content_streams_in_a_few_chunks_and_usage_is_estimated(tmp_path: Path) -> None:
    text = "The mean divides by n-1; it should divide by n. Editing stats.py now."
    client = ScriptedClient(write(tmp_path, reply(text, CALL)))
    tokens: list[str] = []
    completion = client.complete(MESSAGES, [], on_token=tokens.append)
    assert "".join(tokens) == text and 1 < len(tokens) <= 4
    prompt, exact = client.count_tokens(MESSAGES, [])
    assert completion.usage.prompt_tokens == prompt > 0 and exact is False
    assert completion.usage.completion_tokens > len(text) // 8


def test_a_malformed_line_fails_at_load_time_naming_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, reply("fine"), "", '{"content": "oops"')
    with pytest.raises(ModelError, match=r"run\.jsonl:3: not valid JSON"):
        ScriptedClient(path)


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ('["not", "an", "object"]', "JSON object for one assistant message"),
        ('{"role": "user", "content": "hi"}', "JSON object for one assistant message"),
        ('{"content": ["a"]}', "'content' must be a string"),
        ('{"tool_calls": [{"function": {"arguments": "{}"}}]}', "string 'name'"),
        ('{"tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}', "JSON-encoded string"),
    ],
)
def test_lines_that_are_not_assistant_messages_are_rejected(
    tmp_path: Path, line: str, complaint: str
) -> None:
    with pytest.raises(ModelError, match=f"run.jsonl:2: .*{complaint}"):
        ScriptedClient(write(tmp_path, reply("ok"), line))


def test_calls_without_an_id_get_one_and_a_missing_file_is_clear(tmp_path: Path) -> None:
    line = json.dumps({"role": "assistant", "tool_calls": [{"function": {"name": "run_tests"}}]})
    completion = ScriptedClient(write(tmp_path, line)).complete(MESSAGES, [])
    assert completion.message["tool_calls"] == [
        {"id": "call_1_0", "type": "function", "function": {"name": "run_tests", "arguments": "{}"}}
    ]
    assert completion.message["content"] == ""
    with pytest.raises(ModelError, match="does not exist"):
        ScriptedClient(tmp_path / "missing.jsonl")


def test_start_skips_replies_a_resumed_run_already_consumed(tmp_path: Path) -> None:
    path = write(tmp_path, reply("one"), reply("two"), reply("three"))
    first = ScriptedClient(path)
    first.complete(MESSAGES, [])
    resumed = ScriptedClient(path, start=first.consumed)
    assert resumed.complete(MESSAGES, []).message["content"] == "two"
    assert resumed.consumed == 2
    with pytest.raises(ScriptExhausted):
        ScriptedClient(path, start=3).complete(MESSAGES, [])


def test_a_returned_message_can_be_edited_without_changing_the_script(tmp_path: Path) -> None:
    client = ScriptedClient(write(tmp_path, reply("", CALL)))
    client.complete(MESSAGES, []).message["tool_calls"][0]["function"]["name"] = "changed"
    client.consumed = 0
    assert client.complete(MESSAGES, []).message["tool_calls"] == [CALL]


def test_make_client_builds_scripted_clients(tmp_path: Path) -> None:
    path = write(tmp_path, reply("one"), reply("two"))
    # the CLI passes the remote endpoint's settings whatever the spec; a script ignores them
    client = make_client(f"scripted:{path}", start=1, base_url=None, api_key=None, context_window=8)
    assert isinstance(client, ScriptedClient) and client.context_window == 128_000
    assert client.complete(MESSAGES, []).message["content"] == "two"
    with pytest.raises(UnknownModelSpec, match="needs a file"):
        make_client("scripted:")
    with pytest.raises(UnknownModelSpec, match=r"unknown model spec 'qwen3-coder'.*scripted:FILE"):
        make_client("qwen3-coder")


def test_a_line_may_give_the_usage_of_its_reply(tmp_path: Path) -> None:
    given = {"content": "Reading.", "usage": {"prompt_tokens": 900, "cached_tokens": 850}}
    client = ScriptedClient(write(tmp_path, json.dumps(given), reply("Fixed.")))
    first = client.complete(MESSAGES, [])
    assert first.message == {"role": "assistant", "content": "Reading."}
    assert (first.usage.prompt_tokens, first.usage.cached_tokens) == (900, 850)
    assert first.usage.completion_tokens > 0  # not given: estimated
    second = client.complete(MESSAGES, [])
    assert (
        second.usage.cached_tokens == 0 and second.usage.prompt_tokens == client.count_tokens(MESSAGES, [])[0]
    )


@pytest.mark.parametrize("usage", ['{"prompt": 3}', '{"cached_tokens": -1}', '{"cached_tokens": 1.5}', "[]"])
def test_a_bad_usage_fails_at_load_time(tmp_path: Path, usage: str) -> None:
    with pytest.raises(ModelError, match=r"run\.jsonl:1: .*usage"):
        ScriptedClient(write(tmp_path, f'{{"content": "x", "usage": {usage}}}'))
