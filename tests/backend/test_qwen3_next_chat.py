"""Qwen3-Next and Qwen3.5-MoE checkpoints chat as the qwen3 family: their own template renders
tools and calls as transformers does, and Qwen3-Coder's XML calls parse however they stream.

The checkpoint is a tiny Qwen3-Next built by transformers and saved with ``save_pretrained``,
plus a byte-level BPE trained here and a Qwen3-Coder-style chat template (the XML call layout)
in its ``tokenizer_config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from codeagent.backend.chat.families import family_of
from codeagent.backend.chat.model import ChatModel
from codeagent.backend.chat.template import builtin, normalise
from codeagent.backend.chat.toolcalls import make_parser

SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
ADDED = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
CORPUS = [
    "Read the file, fix the bug, run the tests.",
    "<function=read_file>\n<parameter=path>\nstats.py\n</parameter>\n</function>",
    "def mean(values):\n    return sum(values) / len(values)\n",
]
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
HISTORY = [
    {"role": "system", "content": "You are a careful engineer."},
    {"role": "user", "content": "Why does mean([]) fail?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {
                    "name": "read_file",
                    "arguments": json.dumps({"path": "stats.py", "start_line": 3}),
                },
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "1| def mean(v): return sum(v) / len(v)"},
]
REPLY = (
    "<think>\nAn empty list.\n</think>\n\nLet me look again.\n\n<tool_call>\n<function=read_file>\n"
    "<parameter=path>\nstats.py\n</parameter>\n<parameter=start_line>\n12\n</parameter>\n"
    "</function>\n</tool_call>"
)
# Cuts inside every marker: "<tool", "_call>", "<func", "tion=", "<param", "eter=", "</parameter", ...
AWKWARD = [
    "<th", "ink>\nAn empty", " list.\n</thi", "nk>\n\nLet me look again.\n\n<", "tool", "_call>\n<func",
    "tion=read_", "file>\n<param", "eter=pa", "th>\nstats", ".py\n</parameter", ">\n<parameter=start_line>\n1",
    "2\n</", "parameter>\n</function", ">\n</tool_", "call>",
]  # fmt: skip


def write_tokenizer(folder: Path, template: str) -> None:
    from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as Raw

    raw = Raw(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    raw.train_from_iterator(CORPUS * 10, trainer)
    raw.add_tokens([AddedToken(token, normalized=False) for token in ADDED])
    raw.save(str(folder / "tokenizer.json"))
    settings = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": template}
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM

    folder = tmp_path_factory.mktemp("qwen3next_chat")
    config = Qwen3NextConfig(
        vocab_size=320,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        layer_types=["linear_attention"] * 3 + ["full_attention"],
        linear_num_key_heads=1,
        linear_num_value_heads=2,
        linear_key_head_dim=8,
        linear_value_head_dim=8,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=16,
        shared_expert_intermediate_size=16,
        max_position_embeddings=8192,
    )
    torch.manual_seed(0)
    Qwen3NextForCausalLM(config).save_pretrained(folder)
    # A Qwen3-Coder-style template (XML calls); marked so the test sees it is the checkpoint's.
    write_tokenizer(folder, "{#- the checkpoint's own -#}\n" + builtin("qwen3"))
    return folder


def test_the_architectures_are_the_qwen3_family():
    for architecture in (
        "Qwen3NextForCausalLM",
        "Qwen3_5MoeForCausalLM",
        "Qwen3_5MoeForConditionalGeneration",
    ):
        assert family_of({"architectures": [architecture]}) == "qwen3"
    for model_type in ("qwen3_next", "qwen3_5_moe", "qwen3_5_moe_text"):
        assert family_of({"model_type": model_type}) == "qwen3"


def test_the_checkpoint_template_renders_tools_as_transformers_does(checkpoint):
    from transformers import AutoTokenizer

    config = json.loads((checkpoint / "config.json").read_text())
    assert config["architectures"] == ["Qwen3NextForCausalLM"]
    chat = ChatModel.from_dir(checkpoint, config)
    assert (chat.family, chat.context_window, chat.template.is_builtin) == ("qwen3", 8192, False)
    text = chat.template.render(HISTORY, TOOLS)
    reference = AutoTokenizer.from_pretrained(str(checkpoint))
    expected = reference.apply_chat_template(
        normalise(HISTORY), tools=TOOLS, tokenize=False, add_generation_prompt=True
    )
    assert text == expected
    assert (
        "<function=read_file>\n<parameter=path>\nstats.py\n</parameter>\n<parameter=start_line>\n3\n" in text
    )
    assert "<tool_response>\n1| def mean(v)" in text and text.endswith("<|im_start|>assistant\n")


def test_a_release_with_a_text_config_gets_its_window(checkpoint, tmp_path):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).write_text((checkpoint / name).read_text())
    release = {
        "architectures": ["Qwen3_5MoeForConditionalGeneration"],
        "text_config": {"max_position_embeddings": 262144},
    }
    chat = ChatModel.from_dir(tmp_path, release)
    assert (chat.family, chat.context_window, chat.template.is_builtin) == ("qwen3", 262144, False)


def test_a_streamed_xml_call_split_at_awkward_points_parses(checkpoint):
    assert "".join(AWKWARD) == REPLY
    chat = ChatModel.from_dir(checkpoint, json.loads((checkpoint / "config.json").read_text()))
    prompt = chat.template.render(HISTORY, TOOLS)
    results = []
    for pieces in ([REPLY], AWKWARD, list(REPLY)):
        parser = make_parser(chat.family, TOOLS, prompt=prompt)
        deltas = [parser.push(piece) for piece in pieces]
        deltas.append(parser.flush())
        message = parser.finish()
        shown = "".join(delta.content for delta in deltas)
        assert shown == message.content and "<" not in shown
        assert "".join(delta.reasoning for delta in deltas) == message.reasoning_content
        results.append(message)
    for message in results:
        assert not message.malformed
        assert message.content.strip() == "Let me look again."
        assert message.reasoning_content.strip() == "An empty list."
        assert [call["function"]["name"] for call in message.tool_calls] == ["read_file"]
        assert json.loads(message.tool_calls[0]["function"]["arguments"]) == {
            "path": "stats.py",
            "start_line": 12,
        }
