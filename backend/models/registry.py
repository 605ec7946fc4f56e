"""Architectures the runtime supports, keyed by the ``architectures`` name in config.json.

Values are import paths loaded on first use; an unsupported name is a clear error that
lists what is supported.
"""

from __future__ import annotations

import importlib
from typing import Any

ARCHITECTURES: dict[str, str] = {
    "Qwen3MoeForCausalLM": "codeagent.backend.models.qwen3_moe.model:Qwen3MoeForCausalLM",
    "DeepseekV4ForCausalLM": "codeagent.backend.models.deepseek_v4.model:DeepseekV4ForCausalLM",
    "Qwen3NextForCausalLM": "codeagent.backend.models.qwen3_next.model:Qwen3NextForCausalLM",
    "Qwen3_5MoeForCausalLM": "codeagent.backend.models.qwen3_next.model:Qwen3_5MoeForCausalLM",
    # a Qwen3.5-MoE release: its text model only (images are not supported)
    "Qwen3_5MoeForConditionalGeneration": "codeagent.backend.models.qwen3_next.model:Qwen3_5MoeForCausalLM",
}


class UnsupportedArchitecture(ValueError):
    pass


def model_class(architecture: str) -> Any:
    if architecture not in ARCHITECTURES:
        raise UnsupportedArchitecture(
            f"architecture {architecture!r} is not supported; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    module_name, _, class_name = ARCHITECTURES[architecture].partition(":")
    return getattr(importlib.import_module(module_name), class_name)
