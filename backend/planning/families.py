"""Which model family a typed config belongs to, asked of the model registry, so the planner
follows the models wherever their modules live. The planner has rules for these two."""

from __future__ import annotations

from typing import Any

from codeagent.backend.models.registry import model_class
from codeagent.backend.planning import PlanError

QWEN3, DEEPSEEK_V4 = "Qwen3MoeForCausalLM", "DeepseekV4ForCausalLM"


def family(config: Any) -> str:
    """``QWEN3`` or ``DEEPSEEK_V4`` (``PlanError`` for a config of any other family)."""
    for architecture in (QWEN3, DEEPSEEK_V4):
        if isinstance(config, model_class(architecture).config_class):
            return architecture
    raise PlanError(f"no planner rules for {type(config).__name__}; it plans {QWEN3} and {DEEPSEEK_V4}")
