"""Tokenizer, chat templates and streaming tool-call parsing, with a tokenizer trained here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeagent.backend.chat.families import family_of
from codeagent.backend.chat.template import ChatTemplate, TemplateRenderError, builtin
from codeagent.backend.chat.tokenizer import IncrementalDecoder, Tokenizer
from codeagent.backend.chat.toolcalls import make_parser

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file.",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "start_line": {"type": "integer"},
                    "verbose": {"type": "boolean"},
                    "ranges": {"type": "array"},
                },
            },
        },
    }
]
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "read_file", "arguments": json.dumps({"path": "stats.py", "start_line": 3})},
}
TURN_1 = [{"role": "system", "content": "Be careful."}, {"role": "user", "content": "Fix mean()."}]
TURN_2 = [
    *TURN_1,
    {"role": "assistant", "content": "Looking.", "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call_1", "content": "1| def mean(v):"},
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tokenizer_writer) -> Path:
    path = tmp_path_factory.mktemp("tok")
    tokenizer_writer(path)
    return path


def test_encode_decode_round_trip_and_eos(folder):
    tokenizer = Tokenizer.from_dir(folder)
    text = "<|im_start|>user\nLes caractères 🙂 def mean(values):<|im_end|>"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.eos_token_ids == {tokenizer.inner.token_to_id("<|im_end|>")}


def test_incremental_decoder_never_splits_a_character(folder):
    tokenizer = Tokenizer.from_dir(folder)
    text = "déjà vu 🙂🙂 — naïve café"
    ids = tokenizer.encode(text)
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.push(token) for token in ids]
    assert "".join(pieces) == text
    assert not any("\ufffd" in piece for piece in pieces)


@pytest.mark.parametrize("family", ["qwen3", "deepseek_v4"])
def test_builtin_templates_render_tools_and_calls(folder, family):
    template = ChatTemplate.from_dir(folder, family)  # the folder ships no template: built-in one
    text = template.render(TURN_2, TOOLS)
    assert "read_file" in text and "Read a file." in text
    assert "stats.py" in text and "1| def mean(v):" in text
    marker = "<tool_call>" if family == "qwen3" else "<｜DSML｜function_calls>"
    assert text.count(marker) == 2  # the format shown in the tool instructions, and the call


@pytest.mark.parametrize("family", ["qwen3", "deepseek_v4"])
def test_rendering_turn_two_extends_turn_one(folder, family):
    """Prefix caching depends on this: the next turn's prompt starts with the previous one's."""
    template = ChatTemplate.from_dir(folder, family)
    first = template.render(TURN_1, TOOLS, add_generation_prompt=False)
    second = template.render(TURN_2, TOOLS, add_generation_prompt=False)
    third = template.render([*TURN_2, {"role": "user", "content": "Go on."}], TOOLS)
    assert second.startswith(first) and third.startswith(second)


def test_the_checkpoints_own_template_wins(folder, tmp_path, tokenizer_writer):
    tokenizer_writer(
        tmp_path,
        chat_template="{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}",
    )
    text = ChatTemplate.from_dir(tmp_path, "qwen3").render(TURN_1, [])
    assert text == "[system]Be careful.[user]Fix mean().[assistant]"


def test_a_template_error_is_reported(tmp_path, tokenizer_writer):
    tokenizer_writer(tmp_path, chat_template="{{ raise_exception('tools are not supported') }}")
    with pytest.raises(TemplateRenderError, match="tools are not supported"):
        ChatTemplate.from_dir(tmp_path, "qwen3").render(TURN_1, TOOLS)


def feed(family: str, text: str, one_char_at_a_time: bool):
    parser = make_parser(family, TOOLS)
    visible = []
    for piece in list(text) if one_char_at_a_time else [text]:
        delta = parser.push(piece)
        visible.append(delta.content)
    return "".join(visible), parser.finish()


QWEN_REPLY = (
    "<think>I should read it.</think>Let me look.\n<tool_call>\n<function=read_file>\n<parameter=path>\n"
    "stats.py\n</parameter>\n<parameter=start_line>\n3\n</parameter>\n<parameter=verbose>\ntrue\n"
    "</parameter>\n<parameter=ranges>\n[1, 2]\n</parameter>\n</function>\n</tool_call>"
)
DSML_REPLY = (
    'Let me look.\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name="read_file">\n'
    '<｜DSML｜parameter name="path" string="true">stats.py</｜DSML｜parameter>\n'
    '<｜DSML｜parameter name="start_line" string="false">3</｜DSML｜parameter>\n'
    "</｜DSML｜invoke>\n</｜DSML｜function_calls>"
)


@pytest.mark.parametrize(("family", "reply"), [("qwen3", QWEN_REPLY), ("deepseek_v4", DSML_REPLY)])
def test_parsers_stream_without_leaking_markup(family, reply):
    _, whole = feed(family, reply, one_char_at_a_time=False)
    char_visible, chars = feed(family, reply, one_char_at_a_time=True)
    assert whole.content == chars.content == "Let me look."
    assert "<" not in char_visible and "｜" not in char_visible
    assert [c["function"] for c in whole.tool_calls] == [c["function"] for c in chars.tool_calls]
    arguments = json.loads(chars.tool_calls[0]["function"]["arguments"])
    assert chars.tool_calls[0]["function"]["name"] == "read_file"
    assert arguments["path"] == "stats.py" and arguments["start_line"] == 3
    if family == "qwen3":
        assert arguments["verbose"] is True and arguments["ranges"] == [1, 2]
        assert chars.reasoning_content == "I should read it."


def test_hermes_json_calls_parse():
    _, parsed = feed(
        "qwen3", '<tool_call>{"name": "read_file", "arguments": {"path": "a.py"}}</tool_call>', True
    )
    assert json.loads(parsed.tool_calls[0]["function"]["arguments"]) == {"path": "a.py"}


def test_malformed_and_unclosed_calls_stay_text():
    _, bad = feed("qwen3", "ok <tool_call>not a call</tool_call>", True)
    assert bad.tool_calls == [] and "not a call" in bad.content and bad.malformed
    _, unclosed = feed("qwen3", "ok <tool_call>\n<function=read_file>", True)
    assert unclosed.tool_calls == [] and unclosed.content.startswith("ok <tool_call>") and unclosed.malformed


def test_text_that_only_looks_like_a_marker_is_released():
    visible, parsed = feed("qwen3", "a < b and <tool is fine", True)
    assert parsed.content == "a < b and <tool is fine" and parsed.tool_calls == []
    assert visible == "a < b and " or visible.startswith("a < b")


def test_families_from_config():
    assert family_of({"architectures": ["DeepseekV4ForCausalLM"]}) == "deepseek_v4"
    assert family_of({"architectures": ["Qwen3MoeForCausalLM"]}) == "qwen3"
    assert "<|im_start|>" in builtin("qwen3") and "DSML" in builtin("deepseek_v4")
