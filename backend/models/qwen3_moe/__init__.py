"""Qwen3-MoE: ``config.py`` (the config.json fields), ``model.py`` (the layers and the forward),
``weights.py`` (checkpoint keys -> this rank's slices)."""

from codeagent.backend.models.qwen3_moe.config import Qwen3MoeConfig
from codeagent.backend.models.qwen3_moe.model import Qwen3MoeForCausalLM

__all__ = ["Qwen3MoeConfig", "Qwen3MoeForCausalLM"]
