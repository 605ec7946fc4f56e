"""Cache-stable rendering: prompt N + the model's reply N is the start of prompt N+1, as text.

The model writes replies the template would not write the same way (Hermes JSON where the
template writes XML, padded values, padded reasoning), and conversations take turns that make
templates rewrite history (a user message after reasoning). With ``_raw`` on every reply the
rendering is append-only all the same; without it, the tests show what breaks and what holds.
"""

from __future__ import annotations

import pytest

from codeagent.backend.chat.template import ChatTemplate, builtin, normalise
from codeagent.backend.chat.toolcalls import make_parser

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
EOS = {"qwen3": "<|im_end|>", "deepseek_v4": "<｜end▁of▁sentence｜>"}
START = [{"role": "system", "content": "Be careful."}, {"role": "user", "content": "Fix mean()."}]

# Laid out like Qwen3-Coder's own template (content trimmed on its own line before the calls,
# no reasoning), written for this test.
CODER_STYLE = """
{%- if messages[0].role == "system" %}{{ "<|im_start|>system\\n" + messages[0].content }}
{%- for tool in tools or [] %}{{ "\\n<function>" + tool.function.name + "</function>" }}{% endfor %}
{{- "<|im_end|>\\n" }}{% endif %}
{%- for message in messages if message.role != "system" %}
  {%- if message.role == "assistant" and message.tool_calls %}
    {{- "<|im_start|>assistant" }}
    {%- if message.content | trim %}{{ "\\n" + message.content | trim + "\\n" }}{% endif %}
    {%- for call in message.tool_calls %}
      {{- "\\n<tool_call>\\n<function=" + call.function.name + ">\\n" }}
      {%- for name, value in call.function.arguments | items %}
        {{- "<parameter=" + name + ">\\n" + (value | string) + "\\n</parameter>\\n" }}
      {%- endfor %}
      {{- "</function>\\n</tool_call>" }}
    {%- endfor %}
    {{- "<|im_end|>\\n" }}
  {%- elif message.role == "tool" %}
    {%- if loop.previtem is not defined or loop.previtem.role != "tool" %}{{ "<|im_start|>user" }}{% endif %}
    {{- "\\n<tool_response>\\n" + message.content + "\\n</tool_response>" }}
    {%- if loop.last or loop.nextitem.role != "tool" %}{{ "<|im_end|>\\n" }}{% endif %}
  {%- else %}{{ "<|im_start|>" + message.role + "\\n" + message.content + "<|im_end|>\\n" }}
  {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{ "<|im_start|>assistant\\n" }}{% endif %}"""


def qwen_reply(turn: int, thinking: bool) -> str:
    """Padded reasoning, a padded integer, and Hermes JSON where the template writes XML."""
    think = f"<think>\n  step {turn}: look first.  \n</think>\n\n" if thinking else ""
    xml = (
        f"<tool_call>\n<function=read_file>\n<parameter=path>\nf{turn}.py\n</parameter>\n"
        "<parameter=start_line>\n 3 \n</parameter>\n</function>\n</tool_call>"
    )
    hermes = '<tool_call>\n{"name": "read_file", "arguments": {"path":"g.py"}}\n</tool_call>'
    return think + f"Reading f{turn}.py.\n\n" + xml + "\n" + hermes


def deepseek_reply(turn: int, thinking: bool) -> str:
    """Parameters in an unusual order, and a JSON value with a space before it."""
    think = f"step {turn}:  look first.\n</think>" if thinking else ""
    invoke = (
        '<｜DSML｜invoke name="read_file">\n'
        '<｜DSML｜parameter name="start_line" string="false"> 3</｜DSML｜parameter>\n'
        f'<｜DSML｜parameter name="path" string="true">f{turn}.py</｜DSML｜parameter>\n'
        "</｜DSML｜invoke>"
    )
    return think + f"Reading f{turn}.py." + "\n\n<｜DSML｜tool_calls>\n" + invoke + "\n</｜DSML｜tool_calls>"


CASES = {
    "qwen3": ("qwen3", None, {}, True),
    "qwen3-no-thinking": ("qwen3", None, {"enable_thinking": False}, False),
    "qwen3-coder-style": ("qwen3", CODER_STYLE, {}, False),
    "deepseek_v4": ("deepseek_v4", None, {}, False),
    "deepseek_v4-thinking": ("deepseek_v4", None, {"thinking": True}, True),
}


def template_for(case: str) -> tuple[str, ChatTemplate, dict, bool]:
    family, source, options, thinking = CASES[case]
    return family, ChatTemplate({"default": source or builtin(family)}, {}, family), options, thinking


def converse(case: str, tools: list | None, keep_raw: bool, turns: int = 4) -> list[tuple[str, str, str]]:
    """(prompt, reply, prompt after the reply) for each turn; a user message follows turn 2."""
    family, template, options, thinking = template_for(case)
    history = list(START)
    seen = []
    for turn in range(turns):
        prompt = template.render(history, tools, **options)
        reply = (qwen_reply if family == "qwen3" else deepseek_reply)(turn, thinking)
        parser = make_parser(family, TOOLS, prompt=prompt)
        for character in reply:
            parser.push(character)
        parsed = parser.finish()
        assert parsed.malformed is None and parsed.tool_calls and parsed.raw == reply
        message = {"role": "assistant", "content": parsed.content, "tool_calls": parsed.tool_calls}
        if parsed.reasoning_content:
            message["reasoning_content"] = parsed.reasoning_content
        if keep_raw:
            message["_raw"] = parsed.raw
        history.append(message)
        history += [
            {"role": "tool", "tool_call_id": c["id"], "content": "1| x = 1"} for c in parsed.tool_calls
        ]
        if turn == 2:
            history.append({"role": "user", "content": "Also check g.py."})
        seen.append((prompt, reply, template.render(history, tools, **options)))
    return seen


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("with_tools", [True, False], ids=["tools", "no-tools"])
def test_with_raw_every_prompt_extends_every_earlier_prompt_and_reply(case, with_tools):
    family = CASES[case][0]
    seen = converse(case, TOOLS if with_tools else None, keep_raw=True)
    final = seen[-1][2]
    for prompt, reply, following in seen:
        assert following.startswith(prompt + reply + EOS[family])
        assert final.startswith(prompt + reply + EOS[family])


@pytest.mark.parametrize("case", ["qwen3", "deepseek_v4", "qwen3-coder-style"])
def test_without_raw_a_reply_written_differently_breaks_the_extension(case):
    prompt, reply, following = converse(case, TOOLS, keep_raw=False, turns=1)[0]
    assert following.startswith(prompt)
    assert not following.startswith(prompt + reply)


@pytest.mark.parametrize("case", ["qwen3-no-thinking", "deepseek_v4-thinking"])
def test_without_raw_some_templates_rewrite_earlier_turns(case):
    """Qwen with thinking off closes an empty think block in the generation prompt only;
    DeepSeek-V4 thinking without tools drops reasoning before the last user message."""
    seen = converse(case, None, keep_raw=False)
    assert not all(following.startswith(prompt) for prompt, _, following in seen)


def test_without_raw_qwen_drops_reasoning_before_the_last_user_message():
    """What holds without ``_raw``: extension until a user message; then earlier reasoning goes."""
    _, template, _, _ = template_for("qwen3")
    history = list(START)
    message = {"role": "assistant", "content": "Looking.", "reasoning_content": "look first"}
    before_user = template.render([*history, message], TOOLS, add_generation_prompt=False)
    after_user = template.render([*history, message, {"role": "user", "content": "More."}], TOOLS)
    assert "<think>\nlook first\n</think>\n\nLooking.<|im_end|>" in before_user
    assert not after_user.startswith(before_user) and "look first" not in after_user
    raw = {**message, "_raw": "<think>\nlook first\n</think>\n\nLooking."}
    kept = template.render([*history, raw, {"role": "user", "content": "More."}], TOOLS)
    assert kept.startswith(before_user)


@pytest.mark.parametrize("case", ["qwen3", "deepseek_v4", "deepseek_v4-thinking"])
def test_raw_written_as_the_template_would_renders_the_same_text(case):
    family, template, options, thinking = template_for(case)
    reasoning = {"reasoning_content": "look"} if thinking else {}
    plain = [
        *START,
        {"role": "assistant", "content": "", **reasoning, "tool_calls": [_call("a.py")]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    rendered = template.render(plain, TOOLS, **options)
    prompt = template.render(plain[:2], TOOLS, **options)
    reply = rendered[len(prompt) : rendered.index(EOS[family], len(prompt))]
    with_raw = [*plain[:2], {**plain[2], "_raw": reply}, plain[3]]
    assert template.render(with_raw, TOOLS, **options) == rendered
    assert template.render(with_raw, TOOLS, add_generation_prompt=False, **options) == template.render(
        plain, TOOLS, add_generation_prompt=False, **options
    )


def test_a_template_that_does_not_write_assistant_content_ignores_raw():
    source = "{% for m in messages %}[{{ m.role }}]{% endfor %}{% if add_generation_prompt %}>{% endif %}"
    template = ChatTemplate({"default": source}, {}, "qwen3")
    messages = [*START, {"role": "assistant", "content": "hi", "_raw": "RAW"}]
    assert template.render(messages) == "[system][user][assistant]>"


def test_private_keys_never_reach_the_template():
    message = {"role": "assistant", "content": "hi", "_raw": "RAW", "_other": 1, "reasoning_content": None}
    assert normalise([message]) == [{"role": "assistant", "content": "hi"}]
    source = "{% for m in messages %}{{ m | tojson }}{% endfor %}"
    user = {"role": "user", "content": "x", "_note": "private"}
    assert ChatTemplate({"default": source}, {}, "qwen3").render([user]) == '{"role": "user", "content": "x"}'


def _call(path: str) -> dict:
    return {
        "id": "c1",
        "type": "function",
        "function": {"name": "read_file", "arguments": f'{{"path": "{path}"}}'},
    }
