"""Tokenizer, chat templates and their stability across turns, with a tokenizer trained here.

The streaming tool-call parsers have their own tests (test_chat_toolcalls.py). transformers
is the oracle for template rendering (the same template through its
``apply_chat_template`` must give the same text); the DeepSeek-V4 layout is checked against
strings written from DeepSeek's reference encoder (encoding/encoding_dsv4.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codeagent.backend.chat.families import UnknownFamily, family_of, get_family
from codeagent.backend.chat.template import ChatTemplate, TemplateRenderError, builtin, normalise
from codeagent.backend.chat.tokenizer import IncrementalDecoder, Tokenizer, TokenizerError
from codeagent.backend.chat.toolcalls import make_parser

SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"]
SPECIAL += ["<｜User｜>", "<｜Assistant｜>"]
ADDED = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
EOS = {"qwen3": "<|im_end|>", "deepseek_v4": "<｜end▁of▁sentence｜>"}
CORPUS = [
    "You are a careful engineer. Read the file, fix the bug, run the tests.",
    "def mean(values):\n    return sum(values) / len(values)\n",
    '{"name": "read_file", "arguments": {"path": "stats.py", "start_line": 3}}',
    "<function=read_file>\n<parameter=path>\nstats.py\n</parameter>\n</function>",
    "Les caractères accentués et les emojis 🙂 doivent survivre au découpage. 日本語も。",
]


def write_checkpoint(folder: Path, **config: object) -> Path:
    """A byte-level BPE trained on a few sentences, with both families' special tokens."""
    from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as Raw

    raw = Raw(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    raw.train_from_iterator(CORPUS * 10, trainer)
    raw.add_tokens([AddedToken(token, normalized=False) for token in ADDED])
    raw.save(str(folder / "tokenizer.json"))
    declared = {str(raw.get_vocab_size()): {"content": "<|fim_pad|>", "special": True}}
    settings = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "added_tokens_decoder": declared}
    (folder / "tokenizer_config.json").write_text(json.dumps({**settings, **config}))
    generation = {"eos_token_id": [raw.token_to_id("<|im_end|>"), raw.token_to_id("<|endoftext|>")]}
    (folder / "generation_config.json").write_text(json.dumps(generation))
    return folder


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return Tokenizer.from_dir(write_checkpoint(tmp_path_factory.mktemp("tok")))


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


def call(path: str, **more: object) -> dict:
    arguments = json.dumps({"path": path, **more})
    return {
        "id": f"call_{path}",
        "type": "function",
        "function": {"name": "read_file", "arguments": arguments},
    }


TURN_1 = [{"role": "system", "content": "Be careful."}, {"role": "user", "content": "Fix mean()."}]


# -- tokenizer -------------------------------------------------------------------------------


def test_encode_decode_round_trip_and_special_tokens(tokenizer):
    text = "<|im_start|>user\nLes caractères 🙂 <think>def mean(values):</think><|im_end|>"
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.inner.token_to_id("<|im_start|>") in ids  # matched as one token, not spelled out
    assert (
        tokenizer.decode(ids, skip_special_tokens=True)
        == "user\nLes caractères 🙂 <think>def mean(values):</think>"
    )
    assert tokenizer.eos_token_ids == {
        tokenizer.token_to_id("<|im_end|>"),
        tokenizer.token_to_id("<|endoftext|>"),
    }
    assert tokenizer.pad_token_id == tokenizer.token_to_id("<|endoftext|>")
    fim = tokenizer.token_to_id("<|fim_pad|>")  # only tokenizer_config.json declares it
    assert fim == tokenizer.vocab_size - 1 and fim in tokenizer.special_ids
    assert tokenizer.special_tokens == {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}


def test_an_added_token_id_that_disagrees_is_an_error(tmp_path):
    write_checkpoint(tmp_path, added_tokens_decoder={"7": {"content": "<|im_end|>", "special": True}})
    with pytest.raises(TokenizerError, match="<\\|im_end\\|>"):
        Tokenizer.from_dir(tmp_path)


def test_incremental_decoder_never_splits_a_character(tokenizer):
    text = "déjà vu 🙂🙂 — naïve café 日本語"
    ids = tokenizer.encode(text)
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)  # some token holds half a character
    decoder = IncrementalDecoder(tokenizer)
    pieces = [decoder.push(token) for token in ids]
    assert "".join(pieces) + decoder.finish() == text
    assert not any("\ufffd" in piece for piece in pieces)
    truncated = IncrementalDecoder(tokenizer)
    dash = tokenizer.encode("—")  # three bytes the training text never had: three tokens
    assert [truncated.push(i) for i in dash[:-1]] == ["", ""]
    assert truncated.finish() == "\ufffd"


# -- templates -------------------------------------------------------------------------------


def test_template_sources_follow_transformers_precedence(tmp_path):
    named = [{"name": "default", "template": "plain"}, {"name": "tool_use", "template": "with tools"}]
    write_checkpoint(tmp_path, chat_template=named)
    template = ChatTemplate.from_dir(tmp_path, "qwen3")
    assert template.render(TURN_1) == "plain" and template.render(TURN_1, TOOLS) == "with tools"
    (tmp_path / "chat_template.jinja").write_text("from the file")
    assert (
        ChatTemplate.from_tokenizer(Tokenizer.from_dir(tmp_path), "qwen3").render(TURN_1, TOOLS)
        == "from the file"
    )
    (tmp_path / "chat_template.jinja").unlink()
    write_checkpoint(tmp_path)
    assert ChatTemplate.from_dir(tmp_path, "deepseek_v4").is_builtin


ORACLE_TEMPLATE = """{%- set ns = namespace(n=0) -%}
{%- for m in messages -%}{% if m.role == 'tool' %}{% continue %}{% endif %}{% set ns.n = ns.n + 1 %}
{% generation %}[{{ ns.n }}:{{ m.role }}]{{ m.content }}{% endgeneration %}
{%- for c in m.tool_calls or [] %}{{ c.function.arguments | tojson(indent=1) }}{{ c.function.arguments.path }}{% endfor %}
{% endfor %}{{ tools | tojson }}{{ eos_token }}{% if add_generation_prompt %}<go>{% endif %}"""
HISTORY = [*TURN_1, {"role": "assistant", "content": None, "tool_calls": [call("é.py", start_line=3)]}]
HISTORY += [{"role": "tool", "tool_call_id": "call_é.py", "content": "1| def mean(v): <b>&</b>"}]


@pytest.mark.parametrize("source", ["qwen3", "deepseek_v4", "oracle"])
def test_rendering_matches_transformers(tmp_path, source):
    from transformers import AutoTokenizer

    text = ORACLE_TEMPLATE if source == "oracle" else builtin(source)
    write_checkpoint(tmp_path, chat_template=text)
    ours = ChatTemplate.from_dir(tmp_path, "qwen3").render(HISTORY, TOOLS)
    reference = AutoTokenizer.from_pretrained(str(tmp_path))
    expected = reference.apply_chat_template(
        normalise(HISTORY), tools=TOOLS, tokenize=False, add_generation_prompt=True
    )
    assert ours == expected


def test_a_template_error_is_reported(tmp_path):
    write_checkpoint(tmp_path, chat_template="{{ raise_exception('tools are not supported') }}")
    with pytest.raises(TemplateRenderError, match="tools are not supported"):
        ChatTemplate.from_dir(tmp_path, "qwen3").render(TURN_1, TOOLS)
    with pytest.raises(TemplateRenderError, match="private"):
        ChatTemplate({"default": "{% set ns = namespace() %}{% set ns._x = 1 %}"}, {}, "qwen3").render(TURN_1)


@pytest.mark.parametrize("family", ["qwen3", "deepseek_v4"])
def test_builtin_templates_render_tools_and_calls(family):
    text = ChatTemplate({"default": builtin(family)}, {}, family).render(HISTORY, TOOLS)
    assert "read_file" in text and "Read a file." in text and "1| def mean(v):" in text
    if family == "qwen3":
        assert (
            "<function=read_file>\n<parameter=path>\né.py\n</parameter>\n<parameter=start_line>\n3\n" in text
        )
        assert text.endswith(
            "<tool_response>\n1| def mean(v): <b>&</b>\n</tool_response>\n<|im_end|>\n<|im_start|>assistant\n"
        )
    else:
        assert '<｜DSML｜parameter name="start_line" string="false">3</｜DSML｜parameter>' in text
        assert text.endswith(
            "<｜User｜><tool_result>1| def mean(v): <b>&</b></tool_result><｜Assistant｜></think>"
        )


def test_deepseek_v4_layout_follows_the_reference_encoder():
    template = ChatTemplate({"default": builtin("deepseek_v4")}, {}, "deepseek_v4")
    messages = [
        *TURN_1,
        {
            "role": "assistant",
            "content": "A",
            "reasoning_content": "R",
            "tool_calls": [call("a.py", start_line=3)],
        },
        {"role": "tool", "content": "R1"},
        {"role": "tool", "content": "R2"},
        {"role": "user", "content": "U2"},
    ]
    block = (
        '\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name="read_file">\n'
        '<｜DSML｜parameter name="path" string="true">a.py</｜DSML｜parameter>\n'
        '<｜DSML｜parameter name="start_line" string="false">3</｜DSML｜parameter>\n'
        "</｜DSML｜invoke>\n</｜DSML｜tool_calls><｜end▁of▁sentence｜>"
    )
    results = "<｜User｜><tool_result>R1</tool_result>\n\n<tool_result>R2</tool_result>\n\nU2<｜Assistant｜>"
    head = "<｜begin▁of▁sentence｜>Be careful.<｜User｜>Fix mean().<｜Assistant｜>"
    assert template.render(messages) == head + "</think>A" + block + results + "</think>"
    # thinking without tools drops the reasoning of turns before the last user turn
    assert template.render(messages, thinking=True) == head + "</think>A" + block + results + "<think>"
    with_tools = template.render(messages, TOOLS, thinking=True)
    assert with_tools.endswith(
        "<｜User｜>Fix mean().<｜Assistant｜><think>R</think>A" + block + results + "<think>"
    )
    assert with_tools.startswith("<｜begin▁of▁sentence｜>Be careful.\n\n## Tools\n\n")
    assert '\n\n{"name": "read_file", "description": "Read a file."' in with_tools


def reply_for(family: str, content: str, calls: list[dict], reasoning: str | None) -> str:
    """What the model writes for this turn (the prompt already holds any opening think marker)."""
    if family == "qwen3":
        text = f"<think>\n{reasoning}\n</think>\n\n" if reasoning else ""
        blocks = [
            f"<tool_call>\n<function=read_file>\n<parameter=path>\n{json.loads(c['function']['arguments'])['path']}"
            "\n</parameter>\n</function>\n</tool_call>"
            for c in calls
        ]
        return text + (content + "\n\n" if content and blocks else content) + "\n".join(blocks)
    text = f"{reasoning}</think>" if reasoning is not None else ""
    invokes = [
        f'<｜DSML｜invoke name="read_file">\n<｜DSML｜parameter name="path" string="true">'
        f"{json.loads(c['function']['arguments'])['path']}</｜DSML｜parameter>\n</｜DSML｜invoke>"
        for c in calls
    ]
    return (
        text
        + content
        + ("\n\n<｜DSML｜tool_calls>\n" + "\n".join(invokes) + "\n</｜DSML｜tool_calls>" if calls else "")
    )


@pytest.mark.parametrize(
    ("family", "options"), [("qwen3", {}), ("deepseek_v4", {}), ("deepseek_v4", {"thinking": True})]
)
def test_each_turn_extends_the_previous_prompt_and_reply(tokenizer, family, options):
    """Prefix caching depends on it: prompt N + the reply + end of turn starts prompt N+1, in tokens too."""
    template = ChatTemplate({"default": builtin(family)}, {}, family)
    thinking = "I should look." if options else None  # Qwen drops reasoning of earlier user turns
    turns = [("Looking.", [call("stats.py")]), ("", [call("a.py"), call("b.py")]), ("Fixed it.", [])]
    history = list(TURN_1)
    for index, (content, calls) in enumerate(turns):
        prompt = template.render(history, TOOLS, **options)
        reply = reply_for(family, content, calls, thinking if index < 2 else ("" if options else None))
        parser = make_parser(family, TOOLS, prompt=prompt)
        for character in reply:
            parser.push(character)
        parsed = parser.finish()
        assert parsed.content == content and len(parsed.tool_calls) == len(calls)
        message = {"role": "assistant", "content": parsed.content, "tool_calls": parsed.tool_calls or None}
        history += [{**message, "reasoning_content": parsed.reasoning_content or None}]
        history += [
            {"role": "tool", "tool_call_id": c["id"], "content": f"ok {c['id']}"} for c in parsed.tool_calls
        ]
        if not calls:
            history.append({"role": "user", "content": "Thanks."})
        following = template.render(history, TOOLS, **options)
        assert following.startswith(prompt + reply + EOS[family])
        expected = tokenizer.encode(prompt) + tokenizer.encode(reply) + [tokenizer.token_to_id(EOS[family])]
        assert tokenizer.encode(following)[: len(expected)] == expected


def test_families_from_config():
    assert family_of({"architectures": ["DeepseekV4ForCausalLM"]}) == "deepseek_v4"
    assert family_of({"architectures": ["Qwen3MoeForCausalLM"]}) == "qwen3"
    assert family_of({"model_type": "qwen3_moe"}) == "qwen3"
    with pytest.raises(UnknownFamily, match="Qwen3MoeForCausalLM"):
        family_of({"architectures": ["LlamaForCausalLM"], "model_type": "llama"})
    with pytest.raises(UnknownFamily, match="deepseek_v4, qwen3"):
        get_family("llama")
