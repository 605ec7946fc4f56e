"""Qwen3-Next's and Qwen3.5-MoE's text configuration, in ``config.json``'s spellings.

One dataclass reads both: ``qwen3_next`` (``Qwen3NextForCausalLM``) and the text model of
``qwen3_5_moe`` (``Qwen3_5MoeForCausalLM``'s flat config, or the ``text_config`` of a
``Qwen3_5MoeForConditionalGeneration`` release). Where they differ:

- layer pattern: both name it in ``layer_types`` ("linear_attention" / "full_attention"),
  else every ``full_attention_interval``-th layer (default 4) is full attention;
- MLP: Qwen3-Next has ``decoder_sparse_step`` / ``mlp_only_layers`` / ``num_experts`` 0 for
  dense layers of ``intermediate_size`` and ``norm_topk_prob``; Qwen3.5-MoE has none of
  them (every layer sparse, top-k weights always renormalised), so their defaults give that;
- rotary: Qwen3.5's multimodal rope (``mrope_section``) with text positions (the same
  position on its three axes) is the plain partial rotary Qwen3-Next uses, so both read as
  ``partial_rotary_factor`` of ``head_dim`` rotated with ``rope_theta``;
- projections: Qwen3-Next stores the DeltaNet input projections fused per key-head group
  (``in_proj_qkvz``, ``in_proj_ba``), Qwen3.5 separately (``in_proj_qkv``, ``_z``, ``_b``,
  ``_a``): the checkpoint's spelling decides (``weights.py``), not the config.

Refused: attention biases, activations other than SiLU, rope scaling (YaRN and kin), and a
model without a full-attention layer (the engine's KV pool would hold nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LINEAR, FULL = "linear_attention", "full_attention"


@dataclass(slots=True)
class Qwen3NextConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    layer_types: list[str]
    linear_conv_kernel_dim: int
    linear_key_head_dim: int
    linear_value_head_dim: int
    linear_num_key_heads: int
    linear_num_value_heads: int
    num_experts: int
    num_experts_per_tok: int
    moe_intermediate_size: int
    shared_expert_intermediate_size: int
    intermediate_size: int = 0  # dense layers' width (Qwen3-Next only)
    norm_topk_prob: bool = True
    decoder_sparse_step: int = 1
    mlp_only_layers: list[int] = field(default_factory=list)
    partial_rotary_factor: float = 0.25
    rope_theta: float = 10_000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 32768
    quantized: bool = False  # config.json declares a quantization_config (an FP8 release)

    def __post_init__(self) -> None:
        if len(self.layer_types) != self.num_hidden_layers or set(self.layer_types) - {LINEAR, FULL}:
            raise ValueError(f"layer_types must name {LINEAR} or {FULL} for each of the layers")
        if FULL not in self.layer_types:
            raise ValueError("at least one layer must be full_attention")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.linear_num_value_heads % self.linear_num_key_heads:
            raise ValueError("linear_num_value_heads must be a multiple of linear_num_key_heads")
        if self.rotary_dim % 2 or not 0 < self.rotary_dim <= self.head_dim:
            raise ValueError("partial_rotary_factor * head_dim must be an even number of dimensions")
        if self.num_experts and not 0 < self.num_experts_per_tok <= self.num_experts:
            raise ValueError("num_experts_per_tok must be between 1 and num_experts")
        dense = [i for i in range(self.num_hidden_layers) if not self.is_sparse(i)]
        if dense and self.intermediate_size <= 0:
            raise ValueError(f"layers {dense} are dense but intermediate_size is not set")

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    def is_sparse(self, layer: int) -> bool:
        step = self.decoder_sparse_step
        return (
            layer not in self.mlp_only_layers
            and self.num_experts > 0
            and step > 0
            and (layer + 1) % step == 0
        )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Qwen3NextConfig:
        top, raw = raw, raw.get("text_config") or raw  # a Qwen3.5-MoE release: its text model
        if raw.get("attention_bias"):
            raise ValueError("attention_bias is not supported")
        if raw.get("hidden_act", "silu") != "silu":
            raise ValueError(f"hidden_act {raw['hidden_act']!r} is not supported (silu only)")
        rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
        if rope.get("rope_type", rope.get("type", "default")) not in ("default", None):
            raise ValueError(f"rope_type {rope.get('rope_type')!r} is not supported (default only)")
        heads, layers = raw["num_attention_heads"], raw["num_hidden_layers"]
        interval = raw.get("full_attention_interval", 4)
        types = raw.get("layer_types") or [FULL if (i + 1) % interval == 0 else LINEAR for i in range(layers)]
        return cls(
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=raw.get("num_key_value_heads", heads),
            head_dim=raw.get("head_dim") or raw["hidden_size"] // heads,
            layer_types=list(types),
            linear_conv_kernel_dim=raw.get("linear_conv_kernel_dim", 4),
            linear_key_head_dim=raw.get("linear_key_head_dim", 128),
            linear_value_head_dim=raw.get("linear_value_head_dim", 128),
            linear_num_key_heads=raw.get("linear_num_key_heads", 16),
            linear_num_value_heads=raw.get("linear_num_value_heads", 32),
            num_experts=raw.get("num_experts", 0),
            num_experts_per_tok=raw.get("num_experts_per_tok", 0),
            moe_intermediate_size=raw.get("moe_intermediate_size", 0),
            shared_expert_intermediate_size=raw.get("shared_expert_intermediate_size", 0),
            intermediate_size=raw.get("intermediate_size") or 0,
            norm_topk_prob=raw.get("norm_topk_prob", True),
            decoder_sparse_step=raw.get("decoder_sparse_step", 1),
            mlp_only_layers=list(raw.get("mlp_only_layers") or []),
            partial_rotary_factor=rope.get("partial_rotary_factor", raw.get("partial_rotary_factor", 0.25)),
            rope_theta=rope.get("rope_theta", raw.get("rope_theta", 10_000.0)),
            rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
            tie_word_embeddings=raw.get("tie_word_embeddings", top.get("tie_word_embeddings", False)),
            max_position_embeddings=raw.get("max_position_embeddings", 32768),
            quantized=bool(raw.get("quantization_config") or top.get("quantization_config")),
        )
