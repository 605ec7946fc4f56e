"""DeepSeek-V4's configuration, read from ``config.json`` (transformers' or DeepSeek's spelling)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

LAYER_TYPES = ("sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention")


@dataclass(slots=True)
class RopeSpec:
    theta: float
    dim: int  # rotary channels (the last ``dim`` of each head)
    yarn: dict[str, Any] | None = None  # factor, original_max_position_embeddings, beta_fast, beta_slow, ...

    def inverse_frequencies(self) -> tuple[torch.Tensor, float]:
        """One frequency per interleaved pair, and the cos/sin scale (YaRN's attention factor, else 1)."""
        base = self.theta ** (torch.arange(0, self.dim, 2, dtype=torch.float32) / self.dim)
        if not self.yarn:
            return 1.0 / base, 1.0
        return _yarn(base, self.dim, self.theta, self.yarn)


def _yarn(base: torch.Tensor, dim: int, theta: float, p: dict[str, Any]) -> tuple[torch.Tensor, float]:
    factor = float(p["factor"])
    original = float(p["original_max_position_embeddings"])
    fast, slow = float(p.get("beta_fast") or 32), float(p.get("beta_slow") or 1)

    def correction(rotations: float) -> float:
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = max(math.floor(correction(fast)), 0), min(math.ceil(correction(slow)), dim - 1)
    high = high + 0.001 if low == high else high
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    extrapolate = 1 - ramp  # share of the original frequency kept, per pair
    inv_freq = (1.0 / (factor * base)) * (1 - extrapolate) + (1.0 / base) * extrapolate
    return inv_freq, _attention_factor(p, factor)


def _attention_factor(p: dict[str, Any], factor: float) -> float:
    if p.get("attention_factor") is not None:
        return float(p["attention_factor"])

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if p.get("mscale") and p.get("mscale_all_dim"):
        return mscale(factor, p["mscale"]) / mscale(factor, p["mscale_all_dim"])
    return mscale(factor)


@dataclass(slots=True)
class DeepseekV4Config:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    head_dim: int
    q_lora_rank: int
    o_groups: int
    o_lora_rank: int
    n_routed_experts: int
    num_experts_per_tok: int
    moe_intermediate_size: int
    layer_types: list[str]
    mlp_layer_types: list[str]
    compress_rates: dict[str, int]
    sliding_window: int
    index_n_heads: int
    index_head_dim: int
    index_topk: int
    rope_main: RopeSpec
    rope_compress: RopeSpec
    n_shared_experts: int = 1
    routed_scaling_factor: float = 1.5
    swiglu_limit: float = 10.0
    hc_mult: int = 4
    hc_sinkhorn_iters: int = 20
    hc_eps: float = 1e-6
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 1_048_576
    tie_word_embeddings: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (
            len(self.layer_types) != self.num_hidden_layers
            or len(self.mlp_layer_types) != self.num_hidden_layers
        ):
            raise ValueError("layer_types and mlp_layer_types need one entry per layer")
        unknown = set(self.layer_types) - set(LAYER_TYPES)
        if unknown:
            raise ValueError(
                f"unknown attention layer types {sorted(unknown)}; known: {', '.join(LAYER_TYPES)}"
            )
        if (self.num_attention_heads * self.head_dim) % self.o_groups:
            raise ValueError("num_attention_heads * head_dim must divide into o_groups")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DeepseekV4Config:
        head_dim = raw["head_dim"]
        rope_dim = raw.get("qk_rope_head_dim") or int(head_dim * raw.get("partial_rotary_factor", 0.125))
        params = raw.get("rope_parameters") or {}
        return cls(
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            num_hidden_layers=raw["num_hidden_layers"],
            num_attention_heads=raw["num_attention_heads"],
            head_dim=head_dim,
            q_lora_rank=raw["q_lora_rank"],
            o_groups=raw["o_groups"],
            o_lora_rank=raw["o_lora_rank"],
            n_routed_experts=raw["n_routed_experts"],
            num_experts_per_tok=raw["num_experts_per_tok"],
            moe_intermediate_size=raw["moe_intermediate_size"],
            layer_types=list(raw["layer_types"]),
            mlp_layer_types=list(raw["mlp_layer_types"]),
            compress_rates=dict(raw["compress_rates"]),
            sliding_window=raw["sliding_window"],
            index_n_heads=raw["index_n_heads"],
            index_head_dim=raw["index_head_dim"],
            index_topk=raw["index_topk"],
            rope_main=_rope(params.get("main"), raw.get("rope_theta", 10000.0), rope_dim),
            rope_compress=_rope(params.get("compress"), raw.get("compress_rope_theta", 160000.0), rope_dim),
            n_shared_experts=raw.get("n_shared_experts", 1),
            routed_scaling_factor=raw.get("routed_scaling_factor", 1.5),
            swiglu_limit=raw.get("swiglu_limit", 10.0),
            hc_mult=raw.get("hc_mult", 4),
            hc_sinkhorn_iters=raw.get("hc_sinkhorn_iters", 20),
            hc_eps=raw.get("hc_eps", 1e-6),
            rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
            max_position_embeddings=raw.get("max_position_embeddings", 1_048_576),
            tie_word_embeddings=raw.get("tie_word_embeddings", False),
        )

    def rate(self, layer: int) -> int:
        return self.compress_rates.get(self.layer_types[layer], 0)


def _rope(params: dict[str, Any] | None, theta: float, dim: int) -> RopeSpec:
    params = params or {}
    yarn = params if params.get("rope_type") == "yarn" else None
    return RopeSpec(float(params.get("rope_theta", theta)), dim, yarn)
