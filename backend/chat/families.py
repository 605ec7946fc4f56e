"""Which chat family a checkpoint belongs to: decides the fallback template and the parser."""

from __future__ import annotations

from typing import Any

FAMILIES = {"Qwen3MoeForCausalLM": "qwen3", "DeepseekV4ForCausalLM": "deepseek_v4"}


def family_of(config: dict[str, Any]) -> str:
    for architecture in config.get("architectures") or []:
        if architecture in FAMILIES:
            return FAMILIES[architecture]
    model_type = str(config.get("model_type", ""))
    return "deepseek_v4" if model_type.startswith("deepseek") else "qwen3"
