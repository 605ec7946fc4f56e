"""Constrained decoding: the tiny random model, which otherwise writes garbage, writes valid calls.

Grammars are checked on their own (texts they take and refuse), then through the runtime:
every constrained reply parses, with our own parser, as calls whose arguments validate
against the tool's schema (jsonschema), over seeds and schemas; ``tool_choice`` named,
required and none; a greedy reply that already follows the grammar is the same with it; a
batch mixes constrained and free sequences; prefix-cache hits, stop strings and streaming
behave as without constraints.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch

from codeagent.backend.cache.allocator import CacheConfig
from codeagent.backend.chat.prompt import chat_prompt
from codeagent.backend.grammar.matcher import GrammarError
from codeagent.backend.grammar.tools_grammar import reply_grammar
from codeagent.backend.layers.sampler import SamplingParams
from codeagent.backend.runtime import RuntimeConfig, open_runtime

SCHEMAS = {
    "enum": {"type": "object", "properties": {"mode": {"enum": ["read", "write"]}}, "required": ["mode"]},
    "integer": {
        "type": "object",
        "properties": {"line": {"type": "integer", "minimum": 1, "maximum": 999}},
        "required": ["line"],
    },
    "nested": {
        "type": "object",
        "properties": {
            "where": {
                "type": "object",
                "properties": {"deep": {"type": "boolean"}, "depth": {"enum": [1, 2, 3]}},
                "required": ["deep", "depth"],
                "additionalProperties": False,
            }
        },
        "required": ["where"],
    },
    "array": {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}},
        "required": ["tags"],
    },
    "required": {
        "type": "object",
        "properties": {
            "path": {"type": "string", "maxLength": 6},
            "note": {"type": "string", "maxLength": 4},
            "count": {"type": "integer", "minimum": 0, "maximum": 9},
        },
        "required": ["path", "count"],
    },
}


def tool(name: str, schema: dict) -> dict:
    return {"type": "function", "function": {"name": name, "description": name, "parameters": schema}}


TOOLS = [tool(name, schema) for name, schema in SCHEMAS.items()]
ASK = [{"role": "user", "content": "Read the file and fix the bug."}]


@pytest.fixture(scope="module")
def runtime(tiny_chat_model):
    config = RuntimeConfig(
        device="cpu", dtype="float32", cache=CacheConfig(num_blocks=256), remembered_turns=4
    )
    runtime = open_runtime(tiny_chat_model, config)
    yield runtime
    runtime.close()


def matches(runtime, grammar: str, text: str) -> bool:
    matcher = runtime.model.grammar(grammar).matcher().parser
    return matcher.consume_tokens(runtime.model.tokenizer.encode(text)) and matcher.is_accepting()


def test_grammars_take_well_formed_replies_and_refuse_the_rest(runtime):
    grammar = reply_grammar("qwen3", TOOLS, single_token=runtime.model.tokenizer.single_added_token)
    call = "<tool_call>\n<function=required>\n<parameter=path>\na.py\n</parameter>\n<parameter=count>\n3\n</parameter>\n</function>\n</tool_call>"
    assert matches(runtime, grammar, "Any text at all, even <tool_ and </param.")
    assert matches(runtime, grammar, "Let me look.\n\n" + call)
    assert matches(runtime, grammar, call + "\n" + call)
    assert not matches(runtime, grammar, call + " and text after")
    assert not matches(runtime, grammar, call.replace("3\n", "x\n"))  # an integer
    assert not matches(runtime, grammar, call.replace("<parameter=count>\n3\n</parameter>\n", ""))  # required
    assert not matches(runtime, grammar, call.replace("a.py", "a_long_name.py"))  # maxLength
    assert not matches(runtime, grammar, "text <think> more")
    dsml = reply_grammar("deepseek_v4", TOOLS, "required")
    assert matches(
        runtime,
        dsml,
        'enum">\n<｜DSML｜parameter name="mode" string="true">read</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>',
    )
    assert not matches(
        runtime,
        dsml,
        'enum">\n<｜DSML｜parameter name="mode" string="true">rw</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>',
    )
    assert reply_grammar("qwen3", TOOLS, "none") is None and reply_grammar("qwen3", [], "auto") is None
    thinking = reply_grammar("qwen3", TOOLS, in_reasoning=True)  # the prompt ends with an open <think>
    assert matches(runtime, thinking, "I should read it first.\n</think>\n\n" + call)
    assert not matches(runtime, thinking, "No closer, so this is all reasoning " + call)


def drain(generation) -> None:
    for _ in generation:
        pass


def reply(runtime, tools, choice="auto", function=None, seed=0, max_tokens=120, **params):
    prompt = chat_prompt(runtime.model, ASK, tools, choice, function, parallel_calls=False)
    sampling = SamplingParams(
        temperature=params.pop("temperature", 1.0), seed=seed, max_tokens=max_tokens, **params
    )
    generation = runtime.generate(prompt, sampling)
    drain(generation)
    assert generation.error is None, generation.error  # an engine failure is not a grammar one
    return generation


def assert_valid_calls(generation, tools) -> list[dict]:
    message = generation.message()
    assert message.malformed is None, message.raw
    assert message.tool_calls, message.raw
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    for call in message.tool_calls:
        jsonschema.validate(json.loads(call["function"]["arguments"]), schemas[call["function"]["name"]])
    return message.tool_calls


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_every_constrained_reply_is_a_valid_call(runtime, name):
    tools = [tool(name, SCHEMAS[name])]
    for seed in range(6):
        calls = assert_valid_calls(reply(runtime, tools, "required", seed=seed), tools)
        assert {call["function"]["name"] for call in calls} == {name}


def test_without_constraints_the_random_model_writes_no_valid_call(tiny_chat_model, runtime):
    runtime.model.constrain = False
    try:
        generation = reply(runtime, TOOLS, "required", seed=1)
        assert generation.message().malformed or not generation.message().tool_calls
    finally:
        runtime.model.constrain = True


def test_tool_choice_named_and_none(runtime):
    calls = assert_valid_calls(reply(runtime, TOOLS, "function", "nested", seed=3), TOOLS)
    assert [call["function"]["name"] for call in calls] == ["nested"]
    none = chat_prompt(runtime.model, ASK, TOOLS, "none")
    assert none.grammar is None


def test_auto_replies_are_text_or_valid_calls(runtime):
    for seed in range(4):
        generation = reply(runtime, TOOLS, seed=seed, max_tokens=24)
        message = generation.message()
        assert message.malformed is None or generation.result.finish_reason == "length"
        assert_valid_calls(generation, TOOLS) if message.tool_calls else None


def test_a_reply_that_follows_the_grammar_is_decoded_the_same(tiny_chat_model):
    """Greedy. The random model's favourite picks are stray bytes (invalid UTF-8, which free text
    never is), so its head's rows for every token that is not clean text are zeroed: its greedy
    reply then follows the grammar, and the mask must change none of its tokens."""
    config = RuntimeConfig(device="cpu", dtype="float32", cache=CacheConfig(num_blocks=64))
    runtime = open_runtime(tiny_chat_model, config)
    try:
        tokenizer, head = runtime.model.tokenizer, runtime.engine.model.lm_head
        weight = head.weight.detach().clone()
        for token in range(weight.shape[0]):
            text = tokenizer.decode([token]) if token < tokenizer.vocab_size else ""
            if not text or "\ufffd" in text or "<" in text or token in tokenizer.special_ids:
                weight[token] = 0
        head.weight = torch.nn.Parameter(weight, requires_grad=False)
        prompt = chat_prompt(runtime.model, ASK, TOOLS)
        runtime.model.constrain = False
        free = runtime.generate(prompt, SamplingParams(max_tokens=24))
        drain(free)
        runtime.model.constrain = True
        parse = runtime.model.grammar(prompt.grammar).matcher().parser
        assert parse.validate_tokens(free.result.token_ids) == len(free.result.token_ids) == 24
        constrained = runtime.generate(prompt, SamplingParams(max_tokens=24))
        drain(constrained)
        assert constrained.result.token_ids == free.result.token_ids
    finally:
        runtime.close()


def test_a_batch_mixes_constrained_and_free_sequences_and_hits_the_prefix_cache(runtime):
    prompt = chat_prompt(runtime.model, ASK, TOOLS, "required", parallel_calls=False)
    free = chat_prompt(runtime.model, ASK, [], "auto")
    alone = runtime.generate(free, SamplingParams(max_tokens=16))
    drain(alone)
    together = [
        runtime.generate(prompt, SamplingParams(temperature=1.0, seed=s, max_tokens=120)) for s in (7, 8)
    ]
    mixed = runtime.generate(free, SamplingParams(max_tokens=16))
    for generation in [*together, mixed]:
        drain(generation)
    for generation in together:
        assert_valid_calls(generation, TOOLS)
        assert generation.cached_tokens > 0  # the shared prompt's blocks were reused
    assert mixed.result.token_ids == alone.result.token_ids


def test_streaming_and_stop_strings_under_constraints(runtime):
    prompt = chat_prompt(runtime.model, ASK, TOOLS, "required", parallel_calls=False)
    generation = runtime.generate(prompt, SamplingParams(temperature=1.0, seed=5, max_tokens=120))
    pieces = list(generation.pieces(every_token=True))
    assert len(pieces) >= generation.completion_tokens - 1
    streamed = [entry for piece in pieces for entry in piece.tool_calls]
    assert (
        streamed and streamed[0]["function"]["name"] == generation.message().tool_calls[0]["function"]["name"]
    )
    text = reply(runtime, TOOLS, temperature=0.0, max_tokens=24).message().raw
    stop = text[5:9]
    stopped = reply(runtime, TOOLS, temperature=0.0, max_tokens=24, stop=(stop,))
    assert stopped.finish_reason == "stop" and stopped.message().content == text[: text.index(stop)].strip()


def test_response_format_json_schema(runtime):
    schema = SCHEMAS["nested"]
    prompt = chat_prompt(runtime.model, ASK, [], response_format=schema)
    for seed in range(3):
        generation = runtime.generate(prompt, SamplingParams(temperature=1.0, seed=seed, max_tokens=80))
        text = "".join(piece.content for piece in generation)
        jsonschema.validate(json.loads(text), schema)


def test_schemas_llguidance_cannot_read(runtime):
    """Unimplemented keywords are ignored; tools whose grammar still fails are decoded free; a
    response format that fails is the caller's error."""
    lenient = tool(
        "meta",
        {"type": "object", "properties": {"m": {"type": "object", "propertyNames": {"type": "string"}}}},
    )
    assert runtime.model.grammar(reply_grammar("qwen3", [lenient])) is not None
    broken = tool("bad", {"properties": {"x": {"type": "integer", "minimum": "a"}}})
    assert reply(runtime, [broken], max_tokens=4).completion_tokens == 4  # free, as without a grammar
    prompt = chat_prompt(runtime.model, ASK, [], response_format={"type": "integer", "minimum": "a"})
    with pytest.raises(GrammarError, match="does not compile"):
        runtime.generate(prompt, SamplingParams(max_tokens=4))
