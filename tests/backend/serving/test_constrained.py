"""Constrained decoding through ``codeagent serve``: every protocol's tool_choice and structured
output fields reach the grammar, so the tiny random model answers with valid calls and JSON.

One server over the real engine (``max_output_tokens`` 120: room for a whole call), asked
through the official ``openai`` and ``anthropic`` clients.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import jsonschema
import openai
import pytest

from codeagent.backend.chat.model import ChatModel
from codeagent.backend.engine import CacheConfig, Engine
from codeagent.backend.loader import load_model
from codeagent.backend.service import EngineService
from codeagent.backend.serving.server import OpenAIServer, serve

SCHEMA = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "maxLength": 6},
        "line": {"type": "integer", "minimum": 1, "maximum": 99},
        "mode": {"enum": ["read", "write"]},
    },
    "required": ["path", "line", "mode"],
}
ANSWER = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}, "count": {"enum": [1, 2, 3]}},
    "required": ["ok", "count"],
    "additionalProperties": False,
}
FUNCTION = {"name": "open_file", "description": "Open a file.", "parameters": SCHEMA}
ASK = [{"role": "user", "content": "Open the file."}]


@pytest.fixture(scope="module")
def server(tiny_chat_model: Path, chat_model: ChatModel) -> Iterator[OpenAIServer]:
    engine = Engine(
        load_model(tiny_chat_model).model,
        chat_model.tokenizer.eos_token_ids,
        "cpu",
        CacheConfig(num_blocks=256),
    )
    service = EngineService(engine)
    server = OpenAIServer(("127.0.0.1", 0), chat_model, service, max_output_tokens=120)
    serve(server)
    yield server
    server.shutdown()
    server.server_close()
    service.close()


def test_openai_chat_tool_choice_and_response_format(server):
    api = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)
    for seed, choice in enumerate(["required", {"type": "function", "function": {"name": "open_file"}}]):
        reply = api.chat.completions.create(
            model="tiny",
            messages=ASK,
            tools=[{"type": "function", "function": FUNCTION}],
            tool_choice=choice,
            parallel_tool_calls=False,
            seed=seed,
        )
        [call] = reply.choices[0].message.tool_calls
        assert reply.choices[0].finish_reason == "tool_calls" and call.function.name == "open_file"
        jsonschema.validate(json.loads(call.function.arguments), SCHEMA)
    answer = api.chat.completions.create(
        model="tiny",
        messages=ASK,
        seed=3,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER}},
    )
    jsonschema.validate(json.loads(answer.choices[0].message.content), ANSWER)
    with pytest.raises(openai.BadRequestError):
        api.chat.completions.create(model="tiny", messages=ASK, response_format={"type": "xml"})


def test_responses_tool_choice_and_text_format(server):
    api = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)
    reply = api.responses.create(
        model="tiny",
        input="Open the file.",
        tools=[{"type": "function", **FUNCTION}],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    [call] = [item for item in reply.output if item.type == "function_call"]
    jsonschema.validate(json.loads(call.arguments), SCHEMA)
    answer = api.responses.create(
        model="tiny", input="Answer.", text={"format": {"type": "json_schema", "name": "a", "schema": ANSWER}}
    )
    jsonschema.validate(json.loads(answer.output_text), ANSWER)


def test_anthropic_tool_choice_and_output_format(server):
    api = anthropic.Anthropic(
        base_url=server.url.removesuffix("/v1"), api_key="unused", max_retries=0, timeout=60
    )
    tool = {"name": "open_file", "description": "Open a file.", "input_schema": SCHEMA}
    for choice in ({"type": "any", "disable_parallel_tool_use": True}, {"type": "tool", "name": "open_file"}):
        reply = api.messages.create(
            model="tiny", max_tokens=120, messages=ASK, tools=[tool], tool_choice=choice
        )
        [use] = [block for block in reply.content if block.type == "tool_use"]
        assert reply.stop_reason == "tool_use"
        jsonschema.validate(use.input, SCHEMA)
    answer = api.messages.create(
        model="tiny",
        max_tokens=120,
        messages=ASK,
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": ANSWER}}},
    )
    jsonschema.validate(json.loads(answer.content[0].text), ANSWER)
