"""``POST /v1/responses`` through the official ``openai`` client: whole and streamed
responses (also through the SDK's accumulating ``responses.stream``), a function-call round
trip on scripted text, cached prompt tokens, reasoning items, and OpenAI-shaped errors for
what a stateless server does not serve."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from codeagent.backend.serving.server import OpenAIServer

KEY = "sk-serve-test-1234"
TOOLS = [
    {
        "type": "function",
        "name": "read_file",
        "description": "Read a file.",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "start_line": {"type": "integer"}},
            "required": ["path"],
        },
    }
]
INSTRUCTIONS = "You are a careful software engineer. Read the file, fix the bug, run the tests. " * 3
CALL_TEXT = (
    "Let me look.\n<tool_call>\n<function=read_file>\n<parameter=path>\nstats.py\n</parameter>\n"
    "<parameter=start_line>\n3\n</parameter>\n</function>\n</tool_call>"
)


def client(server: OpenAIServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key=key, max_retries=0, timeout=60)


# the real engine


def test_a_response_with_usage_and_cached_tokens(engine_server):
    server, _ = engine_server
    api = client(server)
    ask = dict(
        model="tiny", instructions=INSTRUCTIONS, input="Fix the mean.", max_output_tokens=4, temperature=0
    )
    first = api.responses.create(**ask)
    again = api.responses.create(**ask)
    assert first.object == "response" and first.model == "tiny" and first.store is False
    assert first.output[0].type == "message" and first.output_text == again.output_text  # greedy
    assert 1 <= first.usage.output_tokens <= 4
    assert first.status == ("incomplete" if first.usage.output_tokens == 4 else "completed")
    assert again.usage.input_tokens == first.usage.input_tokens
    assert again.usage.input_tokens_details.cached_tokens > 0  # the same prompt: its full blocks are cached
    assert again.usage.total_tokens == again.usage.input_tokens + again.usage.output_tokens


def test_a_streamed_response_matches_the_whole_one(engine_server):
    server, _ = engine_server
    api = client(server)
    ask = dict(
        model="tiny", input=[{"role": "user", "content": "Fix it."}], max_output_tokens=6, temperature=0
    )
    whole = api.responses.create(**ask)
    events = list(api.responses.create(**ask, stream=True))
    kinds = [event.type for event in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-2:] == ["response.output_item.done", events[-1].type]
    assert events[-1].type in ("response.completed", "response.incomplete")
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == whole.output_text == events[-1].response.output_text
    with api.responses.stream(**ask) as stream:  # the SDK's own accumulation checks the sequence
        snapshots = [e.snapshot for e in stream if e.type == "response.output_text.delta"]
    assert snapshots[-1] == whole.output_text


# scripted text


def test_a_function_call_round_trip_extends_the_prompt_token_for_token(scripted, chat_model):
    server, service = scripted(CALL_TEXT)
    api = client(server)
    user = {"role": "user", "content": [{"type": "input_text", "text": "Fix the mean."}]}
    reply = api.responses.create(model="tiny", instructions=INSTRUCTIONS, input=[user], tools=TOOLS)
    message, call = reply.output
    assert message.type == "message" and reply.output_text == "Let me look."
    assert call.type == "function_call" and call.name == "read_file" and call.status == "completed"
    assert json.loads(call.arguments) == {"path": "stats.py", "start_line": 3}
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "def mean"}
    sent_back = [item.model_dump(exclude_none=True) for item in reply.output]
    api.responses.create(
        model="tiny", instructions=INSTRUCTIONS, input=[user, *sent_back, result], tools=TOOLS
    )
    first, second = service.prompts
    written = service.streams[0].result.token_ids[:-1]  # the reply, without its end of turn
    assert second[: len(first) + len(written)] == first + written
    assert "def mean" in chat_model.tokenizer.decode(second[len(first) :])


def test_a_streamed_function_call(scripted):
    server, _ = scripted(CALL_TEXT)
    api = client(server)
    events = list(api.responses.create(model="tiny", input="Fix it.", tools=TOOLS, stream=True))
    arguments = [e for e in events if e.type.startswith("response.function_call_arguments")]
    assert [e.type for e in arguments] == [
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
    ]
    assert json.loads(arguments[1].arguments) == {"path": "stats.py", "start_line": 3}
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert [item.type for item in done] == ["message", "function_call"]
    assert events[-1].type == "response.completed" and events[-1].response.output[1].name == "read_file"
    with api.responses.stream(model="tiny", input="Fix it.", tools=TOOLS) as stream:
        final = stream.get_final_response()
    assert final.output[1].arguments == arguments[1].arguments


PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch"
CUSTOM = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files with a patch.",
    "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" /(.|\\n)*/'},
}
NAMESPACE = {
    "type": "namespace",
    "name": "agents",
    "description": "Tools for sub-agents.",
    "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object", "properties": {}}}],
}


def test_a_custom_tool_is_a_function_of_one_string_and_its_call_a_custom_tool_call(scripted, chat_model):
    text = f"<tool_call>\n<function=apply_patch>\n<parameter=input>\n{PATCH}\n</parameter>\n</function>\n</tool_call>"
    server, service = scripted(text)
    api = client(server)
    user = {"role": "user", "content": "Add hello.txt."}
    reply = api.responses.create(model="tiny", input=[user], tools=[CUSTOM, *TOOLS])
    (call,) = reply.output
    assert call.type == "custom_tool_call" and call.name == "apply_patch" and call.input == PATCH
    shown = chat_model.tokenizer.decode(service.prompts[0])
    assert "<name>apply_patch</name>" in shown and 'start: "*** Begin Patch"' in shown  # the grammar, shown
    events = list(api.responses.create(model="tiny", input=[user], tools=[CUSTOM], stream=True))
    kinds = [e.type for e in events]
    assert (
        "response.custom_tool_call_input.delta" in kinds
        and "response.function_call_arguments.delta" not in kinds
    )
    assert events[-1].response.output[0].input == PATCH
    result = {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done!"}
    sent_back = [item.model_dump(exclude_none=True) for item in reply.output]
    api.responses.create(model="tiny", input=[user, *sent_back, result], tools=[CUSTOM, *TOOLS])
    first, follow_up = service.prompts[0], service.prompts[-1]
    written = service.streams[0].result.token_ids[:-1]
    assert follow_up[: len(first) + len(written)] == first + written  # the call goes back as written
    assert "Done!" in chat_model.tokenizer.decode(follow_up[len(first) :])


def test_namespaced_tools_are_flattened_and_hosted_tools_left_out(scripted, chat_model):
    server, service = scripted("<tool_call>\n<function=spawn>\n</function>\n</tool_call>")
    api = client(server)
    tools = [NAMESPACE, {"type": "web_search", "external_web_access": False}, *TOOLS]
    reply = api.responses.create(model="tiny", input="Spawn one.", tools=tools)
    (call,) = reply.output
    assert call.type == "function_call" and call.name == "spawn" and call.namespace == "agents"
    shown = chat_model.tokenizer.decode(service.prompts[0])
    assert "<name>spawn</name>\n<description>Tools for sub-agents." in shown and "web_search" not in shown
    streamed = list(api.responses.create(model="tiny", input="Spawn one.", tools=tools, stream=True))
    assert streamed[-1].response.output[0].namespace == "agents"


def test_reasoning_comes_back_as_a_reasoning_item_and_goes_back_in(scripted):
    server, service = scripted("<think>\nCheck the divisor.\n</think>\n\nIt divides by n - 1.")
    api = client(server)
    reply = api.responses.create(model="tiny", input="Why?")
    reasoning, message = reply.output
    assert message.type == "message"
    assert reasoning.type == "reasoning" and reasoning.content[0].text == "Check the divisor."
    assert reply.output_text == "It divides by n - 1."
    kinds = [e.type for e in api.responses.create(model="tiny", input="Why?", stream=True)]
    assert kinds.index("response.reasoning_text.delta") < kinds.index("response.output_text.delta")
    sent_back = [item.model_dump(exclude_none=True) for item in reply.output]
    follow_up = [{"role": "user", "content": "Why?"}, *sent_back, {"role": "user", "content": "And?"}]
    api.responses.create(model="tiny", input=follow_up)
    assert service.prompts[-1][: len(service.prompts[0])] == service.prompts[0]


# errors and keys


def test_unserved_and_malformed_requests_are_openai_errors(scripted):
    server, service = scripted("fine", api_key=KEY)
    with pytest.raises(openai.AuthenticationError):
        client(server, "wrong").responses.create(model="tiny", input="hi")
    api = client(server, KEY)
    cases = [
        (dict(input="hi", previous_response_id="resp_123"), "previous_response_id"),
        (dict(input="hi", tools=[{"type": "local_shell"}]), "tools[0]"),
        (dict(input="hi", tools=[*TOOLS, {**TOOLS[0], "type": "custom"}]), "tools[1].name"),
        (
            dict(input=[{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]),
            "input[0].content[0]",
        ),
        (dict(input=[{"type": "item_reference", "id": "msg_1"}]), "input[0].type"),
        (dict(input="hi", max_output_tokens=0), "max_output_tokens"),
        (dict(input="hi", tool_choice="required"), "tool_choice"),
        (dict(input="hi", text={"format": {"type": "xml"}}), "text.format"),
    ]
    for ask, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            api.responses.create(model="tiny", **ask)
        assert caught.value.body["param"] == param, ask
    with pytest.raises(openai.NotFoundError):
        api.responses.create(model="gpt-9", input="hi")
    raw = httpx.post(
        server.url + "/responses", content=b"{not json", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert raw.status_code == 400 and set(raw.json()["error"]) == {"message", "type", "param", "code"}
    assert service.prompts == []  # nothing malformed reached the engine
    reply = api.responses.create(model="tiny", input="hi", store=True, extra_body={"future": 1})
    assert reply.output_text == "fine" and reply.store is False  # stateless, whatever was asked


def test_an_engine_failure_mid_stream_is_an_error_then_response_failed(scripted):
    server, _ = scripted("half an answer", error="the engine failed: RuntimeError: out of memory")
    api = client(server)
    with pytest.raises(openai.InternalServerError):
        api.responses.create(model="tiny", input="hi")
    events = list(api.responses.create(model="tiny", input="hi", stream=True))
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    assert "out of memory" in events[-2].message


def test_reasoning_effort_none_reaches_the_template(scripted, chat_model):
    server, service = scripted("fine")
    api = client(server)
    api.responses.create(model="tiny", input="hi")
    api.responses.create(model="tiny", input="hi", reasoning={"effort": "none"})
    plain, closed = (chat_model.tokenizer.decode(ids) for ids in service.prompts)
    assert closed == plain + "<think>\n\n</think>\n\n"  # the template closes an empty think block
