"""Streaming tool-call parsers: the same message however the text is split, no markup shown."""

from __future__ import annotations

import json
import random

import pytest

from codeagent.backend.chat.toolcalls import make_parser

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "start_line": {"type": "integer"},
                    "scale": {"type": "number"},
                    "verbose": {"type": "boolean"},
                    "ranges": {"type": "array", "items": {"type": "integer"}},
                    "options": {"type": "object"},
                    "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                    "tag": {"type": "string"},
                },
            },
        },
    }
]

MARKUP = ("<tool_call", "</tool_call", "<function", "</function", "<parameter", "DSML", "<think", "</think")


def feed(family: str, text: str, pieces: list[str] | None = None, prompt: str = ""):
    parser = make_parser(family, TOOLS, prompt=prompt)
    deltas = [parser.push(piece) for piece in (pieces if pieces is not None else [text])]
    deltas.append(parser.flush())
    return deltas, parser.finish()


def assert_same_when_streamed(family: str, text: str, prompt: str = ""):
    """Whole, one character at a time, and in random chunks: the same message, no markup shown."""
    _, whole = feed(family, text, prompt=prompt)
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, 12)))
    for pieces in (list(text), [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]):
        deltas, streamed = feed(family, text, pieces, prompt)
        assert (streamed.content, streamed.reasoning_content, streamed.malformed) == (
            whole.content,
            whole.reasoning_content,
            whole.malformed,
        )
        assert [c["function"] for c in streamed.tool_calls] == [c["function"] for c in whole.tool_calls]
        assert "".join(d.content for d in deltas) == streamed.content
        assert [c["function"] for d in deltas for c in d.tool_calls] == [
            c["function"] for c in streamed.tool_calls
        ]
        if not streamed.malformed:
            assert not any(marker in d.content for d in deltas for marker in MARKUP)
    return whole


QWEN_REPLY = (
    "<think>\nI should read it.\n</think>\n\nLet me look.\n\n<tool_call>\n<function=read_file>\n"
    "<parameter=path>\nstats.py\n</parameter>\n<parameter=start_line>\n3\n</parameter>\n"
    "<parameter=scale>\n1.5\n</parameter>\n<parameter=verbose>\ntrue\n</parameter>\n"
    '<parameter=ranges>\n[1, 2]\n</parameter>\n<parameter=options>\n{"a": null}\n</parameter>\n'
    "<parameter=limit>\nnull\n</parameter>\n<parameter=tag>\n007\n</parameter>\n"
    "<parameter=extra>\n  two\nlines \n</parameter>\n</function>\n</tool_call>\n<tool_call>\n"
    "<function=read_file>\n<parameter=path>\nb.py\n</parameter>\n</function>\n</tool_call>\n"
)
DSML_REPLY = (
    'I will read it.</think>Let me look.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="read_file">\n'
    '<｜DSML｜parameter name="path" string="true">stats.py</｜DSML｜parameter>\n'
    '<｜DSML｜parameter name="start_line" string="false">3</｜DSML｜parameter>\n'
    '<｜DSML｜parameter name="ranges" string="false">[1, 2]</｜DSML｜parameter>\n'
    '<｜DSML｜parameter name="verbose" string="false">yes</｜DSML｜parameter>\n'
    "</｜DSML｜invoke>\n</｜DSML｜tool_calls>"
)


def test_qwen_xml_calls_are_typed_by_schema_and_reasoning_is_separate():
    parsed = assert_same_when_streamed("qwen3", QWEN_REPLY)
    assert (parsed.content, parsed.reasoning_content, parsed.malformed) == (
        "Let me look.",
        "I should read it.",
        None,
    )
    first, second = (json.loads(c["function"]["arguments"]) for c in parsed.tool_calls)
    assert first == {
        "path": "stats.py",
        "start_line": 3,
        "scale": 1.5,
        "verbose": True,
        "ranges": [1, 2],
        "options": {"a": None},
        "limit": None,
        "tag": "007",
        "extra": "  two\nlines ",
    }
    assert second == {"path": "b.py"} and parsed.tool_calls[0]["id"] != parsed.tool_calls[1]["id"]


def test_dsml_calls_and_reasoning_that_starts_in_the_prompt():
    parsed = assert_same_when_streamed("deepseek_v4", DSML_REPLY, prompt="<｜User｜>hi<｜Assistant｜><think>")
    assert (parsed.content, parsed.reasoning_content) == ("Let me look.", "I will read it.")
    arguments = json.loads(parsed.tool_calls[0]["function"]["arguments"])
    assert arguments == {"path": "stats.py", "start_line": 3, "ranges": [1, 2], "verbose": "yes"}
    chat_mode = assert_same_when_streamed("deepseek_v4", "Plain answer.\n", prompt="<｜Assistant｜></think>")
    assert (chat_mode.content, chat_mode.reasoning_content) == ("Plain answer.\n", "")


@pytest.mark.parametrize(
    "text",
    [
        '<tool_call>\n{"name": "read_file", "arguments": {"path": "a.py"}}\n</tool_call>',
        '<tool_call>{"name": "read_file", "arguments": "{\\"path\\": \\"a.py\\"}"}</tool_call>',
        "<function=read_file>\n<parameter=path>\na.py\n</function>",  # no wrapper, no </parameter>
    ],
)
def test_hermes_json_and_unwrapped_calls_parse(text):
    parsed = assert_same_when_streamed("qwen3", text)
    assert json.loads(parsed.tool_calls[0]["function"]["arguments"]) == {"path": "a.py"}
    assert parsed.content == "" and parsed.malformed is None


@pytest.mark.parametrize(
    ("family", "text", "kept"),
    [
        ("qwen3", "ok <tool_call>{not json}</tool_call>", "ok<tool_call>{not json}</tool_call>"),
        (
            "qwen3",
            "ok <tool_call>\n<function=read_file>\n<parameter=path>",
            "ok<tool_call>\n<function=read_file>",
        ),
        (
            "deepseek_v4",
            "ok\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke",
            "ok<｜DSML｜tool_calls>\n<｜DSML｜invoke",
        ),
    ],
)
def test_malformed_and_unclosed_calls_stay_text(family, text, kept):
    parsed = assert_same_when_streamed(family, text)
    assert parsed.tool_calls == [] and parsed.content.startswith(kept) and parsed.malformed


def test_text_that_only_looks_like_a_marker_is_released():
    text = "a < b, <tool is fine, <thinking> too, </functional>\n"
    deltas, parsed = feed("qwen3", text, list(text))
    assert parsed.content == text and parsed.tool_calls == [] and parsed.malformed is None
    assert "".join(d.content for d in deltas[:-1]) == text.rstrip()  # the trailing newline waits for flush


def test_a_stray_end_of_reasoning_marker_is_not_shown():
    """Happens when the prompt opened reasoning but the parser was not given the prompt."""
    parsed = assert_same_when_streamed("deepseek_v4", "Sure.</think> Done")
    assert (parsed.content, parsed.reasoning_content) == ("Sure. Done", "")
