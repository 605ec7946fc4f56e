"""Chat families: which one a checkpoint belongs to, and what each family's text looks like.

A family fixes the built-in template used when a checkpoint ships none
(``templates/<name>.jinja``), the markers that open and close tool-call blocks and
reasoning, how a finished block is read (``call_formats``), and whether whitespace at the
edges of reasoning is markup (Qwen templates trim it and re-insert their own newlines;
DeepSeek's encoding keeps reasoning verbatim).

A checkpoint's family comes from ``config.json``: its ``architectures`` first, then its
``model_type``. Unknown checkpoints raise an error that lists the known ones, rather than
being given a format they were never trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from codeagent.backend.chat.call_formats import Call, Schemas, parse_dsml_block, parse_qwen_block

BlockParser = Callable[[str, Schemas], list[Call] | None]


class UnknownFamily(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    call_blocks: tuple[tuple[str, str], ...]  # (opening marker, closing marker), tried in order
    parse_block: BlockParser  # reads opener + body + closer of one finished block
    think_open: str = "<think>"
    think_close: str = "</think>"
    trim_reasoning: bool = False  # whitespace around reasoning is the template's, not the model's


QWEN3 = Family(
    name="qwen3",
    # Qwen3-Coder sometimes leaves out the <tool_call> wrapper; a bare <function=...> still counts.
    call_blocks=(("<tool_call>", "</tool_call>"), ("<function=", "</function>")),
    parse_block=parse_qwen_block,
    trim_reasoning=True,
)
DEEPSEEK_V4 = Family(
    name="deepseek_v4",
    # V4 writes tool_calls; V3.2's encoding wrote function_calls with the same insides.
    call_blocks=(
        ("<｜DSML｜tool_calls>", "</｜DSML｜tool_calls>"),
        ("<｜DSML｜function_calls>", "</｜DSML｜function_calls>"),
    ),
    parse_block=parse_dsml_block,
)
FAMILIES = {family.name: family for family in (QWEN3, DEEPSEEK_V4)}

# Qwen3-Next (Qwen3-Coder-Next) and Qwen3.5-MoE write Qwen3-Coder's XML calls
# (``<tool_call><function=NAME><parameter=P>...``) and ``<think>`` reasoning: the qwen3 family.
# Their checkpoints ship their own chat template, which is the one used.
ARCHITECTURES = {
    "Qwen3MoeForCausalLM": "qwen3",
    "Qwen3ForCausalLM": "qwen3",
    "Qwen3NextForCausalLM": "qwen3",
    "Qwen3_5MoeForCausalLM": "qwen3",
    "Qwen3_5MoeForConditionalGeneration": "qwen3",
    "DeepseekV4ForCausalLM": "deepseek_v4",
}
MODEL_TYPES = {
    "qwen3_moe": "qwen3",
    "qwen3": "qwen3",
    "qwen3_next": "qwen3",
    "qwen3_5_moe": "qwen3",
    "qwen3_5_moe_text": "qwen3",
    "deepseek_v4": "deepseek_v4",
}


def family_of(config: dict[str, Any]) -> str:
    """The family name of a checkpoint, from its ``config.json`` contents."""
    for architecture in config.get("architectures") or []:
        if architecture in ARCHITECTURES:
            return ARCHITECTURES[architecture]
    model_type = config.get("model_type")
    if model_type in MODEL_TYPES:
        return MODEL_TYPES[model_type]
    raise UnknownFamily(
        f"no chat family for architectures={config.get('architectures')} model_type={model_type!r}; "
        f"known architectures: {', '.join(sorted(ARCHITECTURES))}; model types: {', '.join(sorted(MODEL_TYPES))}"
    )


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise UnknownFamily(f"unknown chat family {name!r}; available: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]
