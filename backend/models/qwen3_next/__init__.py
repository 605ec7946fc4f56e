"""Qwen3-Next and Qwen3.5-MoE's text model: ``config.py`` (the config.json fields of both),
``deltanet.py`` (Gated DeltaNet layers and their per-sequence state), ``attention.py`` (gated
full attention, the (1 + w) RMSNorm), ``moe.py`` (the MoE with a shared expert, dense MLPs),
``model.py`` (the layers and the forward), ``weights.py`` (checkpoint keys -> parameters),
``packed.py`` (a quantized release's matrices kept packed as they load)."""

from codeagent.backend.models.qwen3_next.config import Qwen3NextConfig
from codeagent.backend.models.qwen3_next.model import Qwen3_5MoeForCausalLM, Qwen3NextForCausalLM

__all__ = ["Qwen3NextConfig", "Qwen3NextForCausalLM", "Qwen3_5MoeForCausalLM"]
