"""DeepSeek-V4's configuration, read from ``config.json`` in either spelling.

- DeepSeek's release spelling: ``compress_ratios`` (one per layer, 0 = sliding window,
  4 = compressed sparse with an indexer, anything else = heavily compressed; extra
  trailing entries belong to the MTP layer and are dropped), ``num_hash_layers``,
  ``qk_rope_head_dim``, ``rope_theta`` for sliding layers and ``compress_rope_theta`` plus
  ``rope_scaling`` (YaRN) for compressed layers.
- transformers' spelling: ``layer_types``, ``mlp_layer_types``, ``compress_rates`` and a
  ``rope_parameters`` dict keyed ``main`` / ``compress``.

YaRN's cos/sin scale ("attention factor"): DeepSeek's inference code never scales
(unit-modulus rotations), and transformers pins the factor to 1.0 when it reads the
release spelling, so a release config gets 1.0. A transformers config whose nested
``rope_parameters`` name no factor gets YaRN's usual ``0.1 ln(factor) + 1``, because
that is what transformers computes for it.

Not covered: scoring functions other than ``sqrtsoftplus`` and more than one shared
expert (no released V4 uses them); a config naming them is rejected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

SLIDING, CSA, HCA = "sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention"
LAYER_TYPES = (SLIDING, CSA, HCA)
MLP_LAYER_TYPES = ("hash_moe", "moe")
CSA_RATIO = 4  # DeepSeek's code gives a layer overlapping windows and an indexer iff its ratio is 4


@dataclass(slots=True)
class RopeSpec:
    """Rotary settings of one rope family (``main``: sliding layers, ``compress``: CSA/HCA)."""

    theta: float
    dim: int  # rotary channels: the last ``dim`` of each head, rotated in interleaved pairs
    yarn_factor: float = 1.0  # 1.0 = plain RoPE
    original_max_position: int = 0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float = 1.0  # cos/sin scale


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
    scoring_func: str = "sqrtsoftplus"
    extra: dict[str, Any] = field(default_factory=dict)  # keys we read but do not model (quantization)

    def __post_init__(self) -> None:
        n = self.num_hidden_layers
        if len(self.layer_types) != n or len(self.mlp_layer_types) != n:
            raise ValueError(
                f"layer_types ({len(self.layer_types)}) and mlp_layer_types ({len(self.mlp_layer_types)}) "
                f"need one entry per layer ({n})"
            )
        _require_known("attention layer types", self.layer_types, LAYER_TYPES)
        _require_known("mlp layer types", self.mlp_layer_types, MLP_LAYER_TYPES)
        for kind in set(self.layer_types) - {SLIDING}:
            if self.compress_rates.get(kind, 0) < 1:
                raise ValueError(f"compress_rates needs a positive rate for {kind}")
        if (self.num_attention_heads * self.head_dim) % self.o_groups:
            raise ValueError("num_attention_heads * head_dim must split evenly into o_groups")
        for spec in (self.rope_main, self.rope_compress):
            if spec.dim % 2 or not 0 < spec.dim <= min(self.head_dim, self.index_head_dim):
                raise ValueError(f"rotary dim {spec.dim} must be even and fit head_dim and index_head_dim")
        if not 0 < self.num_experts_per_tok <= self.n_routed_experts:
            raise ValueError("num_experts_per_tok must be between 1 and n_routed_experts")
        if self.n_shared_experts != 1:
            raise ValueError(f"exactly one shared expert is supported, not {self.n_shared_experts}")
        if self.scoring_func != "sqrtsoftplus":
            raise ValueError(f"scoring_func {self.scoring_func!r} is not supported (only sqrtsoftplus)")
        if min(self.sliding_window, self.index_topk, self.hc_mult, self.hc_sinkhorn_iters) < 1:
            raise ValueError("sliding_window, index_topk, hc_mult and hc_sinkhorn_iters must be >= 1")

    def rate(self, layer: int) -> int:
        """Tokens pooled per compressed entry at this layer (0 for sliding-window layers)."""
        return self.compress_rates.get(self.layer_types[layer], 0)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DeepseekV4Config:
        n, head_dim = raw["num_hidden_layers"], raw["head_dim"]
        layer_types, rates = _attention_schedule(raw, n)
        main, compress = _rope_specs(raw, _rope_dim(raw, head_dim))
        return cls(
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            num_hidden_layers=n,
            num_attention_heads=raw["num_attention_heads"],
            head_dim=head_dim,
            q_lora_rank=raw["q_lora_rank"],
            o_groups=raw["o_groups"],
            o_lora_rank=raw["o_lora_rank"],
            n_routed_experts=raw["n_routed_experts"],
            num_experts_per_tok=raw["num_experts_per_tok"],
            moe_intermediate_size=raw["moe_intermediate_size"],
            layer_types=layer_types,
            mlp_layer_types=_mlp_schedule(raw, n),
            compress_rates=rates,
            sliding_window=raw["sliding_window"],
            index_n_heads=raw["index_n_heads"],
            index_head_dim=raw["index_head_dim"],
            index_topk=raw["index_topk"],
            rope_main=main,
            rope_compress=compress,
            n_shared_experts=raw.get("n_shared_experts", 1),
            routed_scaling_factor=raw.get("routed_scaling_factor", 1.5),
            swiglu_limit=raw.get("swiglu_limit", 10.0),
            hc_mult=raw.get("hc_mult", 4),
            hc_sinkhorn_iters=raw.get("hc_sinkhorn_iters", 20),
            hc_eps=raw.get("hc_eps", 1e-6),
            rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
            max_position_embeddings=raw.get("max_position_embeddings", 1_048_576),
            scoring_func=raw.get("scoring_func", "sqrtsoftplus"),
            extra={k: raw[k] for k in ("quantization_config", "expert_dtype") if k in raw},
        )


def _require_known(what: str, values: list[str], known: tuple[str, ...]) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {', '.join(known)}")


def _attention_schedule(raw: dict[str, Any], n: int) -> tuple[list[str], dict[str, int]]:
    rates = dict(raw.get("compress_rates") or {})
    if "compress_rate_csa" in raw:
        rates[CSA] = raw["compress_rate_csa"]
    if "compress_rate_hca" in raw:
        rates[HCA] = raw["compress_rate_hca"]
    if raw.get("layer_types") is not None:
        return list(raw["layer_types"]), rates
    if raw.get("compress_ratios") is None:
        raise ValueError("config names neither layer_types nor compress_ratios")
    ratios = list(raw["compress_ratios"])[:n]  # entries past the last layer describe MTP layers
    types = [SLIDING if r == 0 else CSA if r == CSA_RATIO else HCA for r in ratios]
    heavy = {r for r in ratios if r not in (0, CSA_RATIO)}
    if len(heavy) > 1:
        raise ValueError(f"heavily compressed layers need one common ratio, got {sorted(heavy)}")
    rates.setdefault(CSA, CSA_RATIO)
    if heavy:
        rates[HCA] = heavy.pop()
    return types, rates


def _mlp_schedule(raw: dict[str, Any], n: int) -> list[str]:
    if raw.get("mlp_layer_types") is not None:
        return list(raw["mlp_layer_types"])
    hashed = min(n, raw.get("num_hash_layers", 3))
    return ["hash_moe"] * hashed + ["moe"] * (n - hashed)


def _rope_dim(raw: dict[str, Any], head_dim: int) -> int:
    if raw.get("qk_rope_head_dim"):
        return int(raw["qk_rope_head_dim"])
    params = raw.get("rope_parameters") or {}
    main = params.get("main") if isinstance(params.get("main"), dict) else params
    factor = raw.get("partial_rotary_factor") or main.get("partial_rotary_factor") or 64 / 512
    return int(head_dim * factor)


def _rope_specs(raw: dict[str, Any], dim: int) -> tuple[RopeSpec, RopeSpec]:
    params = raw.get("rope_parameters") or {}
    if isinstance(params.get("main"), dict) and isinstance(params.get("compress"), dict):
        main, compress, nested = params["main"], params["compress"], True
    else:  # release spelling: rope_scaling (YaRN) applies to the compressed layers only
        main, compress, nested = {}, raw.get("rope_scaling") or {}, False
    main_theta = main.get("rope_theta", raw.get("rope_theta", 10000.0))
    compress_theta = compress.get("rope_theta", raw.get("compress_rope_theta", 160000.0))
    return _spec(main, main_theta, dim, nested), _spec(compress, compress_theta, dim, nested)


def _spec(params: dict[str, Any], theta: float, dim: int, nested: bool) -> RopeSpec:
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return RopeSpec(float(theta), dim)
    if kind != "yarn":
        raise ValueError(f"rope type {kind!r} is not supported for DeepSeek-V4 (default or yarn)")
    factor = float(params["factor"])
    return RopeSpec(
        float(theta),
        dim,
        yarn_factor=factor,
        original_max_position=int(params["original_max_position_embeddings"]),
        beta_fast=float(params.get("beta_fast") or 32),
        beta_slow=float(params.get("beta_slow") or 1),
        attention_factor=_attention_factor(params, factor)
        if nested
        else float(params.get("attention_factor") or 1.0),
    )


def _attention_factor(params: dict[str, Any], factor: float) -> float:
    """transformers' YaRN default for a nested rope dict that names no factor."""
    if params.get("attention_factor") is not None:
        return float(params["attention_factor"])

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if params.get("mscale") and params.get("mscale_all_dim"):
        return mscale(factor, params["mscale"]) / mscale(factor, params["mscale_all_dim"])
    return mscale(factor)
