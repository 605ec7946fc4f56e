"""Which model family a typed config belongs to, asked of the model registry, so the planner
follows the models wherever their modules live. The planner has rules for these three
(Qwen3-Next's config class also reads Qwen3.5-MoE's text model: one family)."""

from __future__ import annotations

from typing import Any

from codeagent.backend.models.registry import model_class
from codeagent.backend.planning import PlanError

QWEN3, DEEPSEEK_V4, QWEN3_NEXT = "Qwen3MoeForCausalLM", "DeepseekV4ForCausalLM", "Qwen3NextForCausalLM"
PLANNED = (QWEN3, DEEPSEEK_V4, QWEN3_NEXT)


def family(config: Any) -> str:
    """``QWEN3``, ``DEEPSEEK_V4`` or ``QWEN3_NEXT`` (``PlanError`` for a config of any other family)."""
    for architecture in PLANNED:
        if isinstance(config, model_class(architecture).config_class):
            return architecture
    raise PlanError(f"no planner rules for {type(config).__name__}; it plans {', '.join(PLANNED)}")
