"""Qwen3-MoE (``Qwen3MoeForCausalLM``; Qwen3-Coder-30B-A3B and its kin).

Per layer: RMSNorm -> GQA attention with per-head RMSNorm on q and k before rotary ->
residual -> RMSNorm -> sparse MoE (softmax top-k, optional renormalisation) or, for
layers listed in ``mlp_only_layers`` / off the ``decoder_sparse_step``, a dense SiLU MLP ->
residual (the add fused with the next norm where a kernel does both). Weights are kept fused
for kernels: ``qkv`` [(H + 2·KVH)·D, hidden], experts
``w13`` [E, 2I, hidden] and ``w2`` [E, hidden, I]; ``load_weights`` takes the per-matrix and
per-expert names of released checkpoints (``model.layers.N.mlp.experts.E.gate_proj.weight``)
and copies each into its slice, so loading never holds a second copy of a layer. The hot
path calls submodules' ``forward`` directly: no hooks are used, and ``nn.Module.__call__``
costs a few microseconds a call, a share of a CPU decode step (``docs/bench/cpu-choices.md``).
The kernels (``kernels``), chosen when the model is built, reach layers through a ``Step``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from codeagent.backend.cache.paged import KVStream, SeqBlocks, growing_rows
from codeagent.backend.kernels.dispatch import Kernels
from codeagent.backend.layers.attention import KVCache, attend
from codeagent.backend.layers.linear import Linear, empty_param, head_logits
from codeagent.backend.layers.moe import experts_forward, silu_and_mul, softmax_topk
from codeagent.backend.layers.norm import RMSNorm, add_rms_norm, rms_norm
from codeagent.backend.layers.rotary import cos_sin, inverse_frequencies, norm_then_rotary
from codeagent.backend.models.base import CausalLMModule, SeqSlice, Step, last_rows
from codeagent.backend.quant import dequantizing


@dataclass(slots=True)
class Qwen3MoeConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    moe_intermediate_size: int
    intermediate_size: int
    num_experts: int
    num_experts_per_tok: int
    norm_topk_prob: bool = True
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    decoder_sparse_step: int = 1
    mlp_only_layers: list[int] = field(default_factory=list)
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 32768

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if not 0 < self.num_experts_per_tok <= self.num_experts:
            raise ValueError("num_experts_per_tok must be between 1 and num_experts")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Qwen3MoeConfig:
        rope = raw.get("rope_parameters") or {}
        heads = raw["num_attention_heads"]
        return cls(
            vocab_size=raw["vocab_size"],
            hidden_size=raw["hidden_size"],
            num_hidden_layers=raw["num_hidden_layers"],
            num_attention_heads=heads,
            num_key_value_heads=raw.get("num_key_value_heads", heads),
            head_dim=raw.get("head_dim") or raw["hidden_size"] // heads,
            moe_intermediate_size=raw["moe_intermediate_size"],
            intermediate_size=raw.get("intermediate_size", raw["moe_intermediate_size"]),
            num_experts=raw.get("num_experts") or raw["num_local_experts"],
            num_experts_per_tok=raw["num_experts_per_tok"],
            norm_topk_prob=raw.get("norm_topk_prob", True),
            rms_norm_eps=raw.get("rms_norm_eps", 1e-6),
            rope_theta=rope.get("rope_theta", raw.get("rope_theta", 1_000_000.0)),
            decoder_sparse_step=raw.get("decoder_sparse_step", 1),
            mlp_only_layers=list(raw.get("mlp_only_layers") or []),
            tie_word_embeddings=raw.get("tie_word_embeddings", False),
            max_position_embeddings=raw.get("max_position_embeddings", 32768),
        )

    def is_sparse(self, layer: int) -> bool:
        step = self.decoder_sparse_step
        return layer not in self.mlp_only_layers and step > 0 and (layer + 1) % step == 0


class Attention(nn.Module):
    def __init__(self, c: Qwen3MoeConfig, dtype: torch.dtype, device: Any) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        self.qkv = Linear(c.hidden_size, (self.heads + 2 * self.kv_heads) * self.head_dim, dtype, device)
        self.o = Linear(self.heads * self.head_dim, c.hidden_size, dtype, device)
        self.q_norm = RMSNorm(self.head_dim, c.rms_norm_eps).to(device=device, dtype=dtype)
        self.k_norm = RMSNorm(self.head_dim, c.rms_norm_eps).to(device=device, dtype=dtype)
        self.scale = self.head_dim**-0.5

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        caches: list[KVCache],
        step: Step,
    ) -> torch.Tensor:
        t, kernels = x.shape[0], step.kernels
        q, k, v = self.qkv.forward(x, kernels).split(
            [self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim], dim=-1
        )
        q = norm_then_rotary(q, self.q_norm.weight, self.q_norm.eps, cos, sin, kernels)  # [T, H, D]
        k = norm_then_rotary(k, self.k_norm.weight, self.k_norm.eps, cos, sin, kernels)  # [T, KVH, D]
        v = v.view(t, self.kv_heads, self.head_dim)
        out = attend(q, k, v, caches, step.sizes, self.scale, step.tables, kernels)  # [T, H, D]
        return self.o.forward(out.reshape(t, -1), kernels)


class SparseMoe(nn.Module):
    def __init__(self, c: Qwen3MoeConfig, dtype: torch.dtype, device: Any) -> None:
        super().__init__()
        self.top_k, self.normalize = c.num_experts_per_tok, c.norm_topk_prob
        self.gate = Linear(c.hidden_size, c.num_experts, dtype, device)
        self.w13 = empty_param(
            c.num_experts, 2 * c.moe_intermediate_size, c.hidden_size, dtype=dtype, device=device
        )
        self.w2 = empty_param(
            c.num_experts, c.hidden_size, c.moe_intermediate_size, dtype=dtype, device=device
        )

    def forward(self, x: torch.Tensor, kernels: Kernels) -> torch.Tensor:
        logits = self.gate.forward(x, kernels)  # [T, E]
        weights, ids = softmax_topk(logits, self.top_k, self.normalize, kernels)  # [T, k]
        return experts_forward(x, self.w13, self.w2, weights, ids, kernels)


class DenseMlp(nn.Module):
    def __init__(self, c: Qwen3MoeConfig, dtype: torch.dtype, device: Any) -> None:
        super().__init__()
        self.w13 = Linear(c.hidden_size, 2 * c.intermediate_size, dtype, device)
        self.w2 = Linear(c.intermediate_size, c.hidden_size, dtype, device)

    def forward(self, x: torch.Tensor, kernels: Kernels) -> torch.Tensor:
        return self.w2.forward(silu_and_mul(self.w13.forward(x, kernels)), kernels)


class DecoderLayer(nn.Module):
    def __init__(self, c: Qwen3MoeConfig, index: int, dtype: torch.dtype, device: Any) -> None:
        super().__init__()
        self.input_norm = RMSNorm(c.hidden_size, c.rms_norm_eps).to(device=device, dtype=dtype)
        self.attn = Attention(c, dtype, device)
        self.post_norm = RMSNorm(c.hidden_size, c.rms_norm_eps).to(device=device, dtype=dtype)
        self.mlp: nn.Module = (
            SparseMoe(c, dtype, device) if c.is_sparse(index) else DenseMlp(c, dtype, device)
        )

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        caches: list[KVCache],
        step: Step,
    ) -> torch.Tensor:
        kernels = step.kernels
        out = self.attn.forward(self.input_norm.forward(x, kernels), cos, sin, caches, step)
        h, x = add_rms_norm(out, x, self.post_norm.weight, self.post_norm.eps, kernels)  # [T, hidden] each
        return x + self.mlp.forward(h, kernels)


class Qwen3MoeForCausalLM(CausalLMModule):
    config_class = Qwen3MoeConfig

    def __init__(
        self,
        config: Qwen3MoeConfig,
        dtype: torch.dtype = torch.float32,
        device: Any = "cpu",
        kernels: Kernels | None = None,
    ) -> None:
        super().__init__(config, device, kernels)
        self.embed = empty_param(config.vocab_size, config.hidden_size, dtype=dtype, device=device)
        self.layers = nn.ModuleList(
            DecoderLayer(config, i, dtype, device) for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps).to(device=device, dtype=dtype)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, dtype, device)
        self.inv_freq = inverse_frequencies(config.head_dim, config.rope_theta)

    block_multiple = 1  # any block size works: every row is one token's

    def cache_streams(self, block_size: int) -> list[KVStream]:
        """What a block of tokens leaves in the KV pool: per layer, keys and values [KVH, D]."""
        c, dtype = self.config, self.embed.dtype
        shape = (c.num_key_value_heads, c.head_dim)
        return [KVStream(f"{i}.{kv}", 1, shape, dtype) for i in range(len(self.layers)) for kv in "kv"]

    def new_state(self, paged: SeqBlocks | None = None, cached_tokens: int = 0) -> list[KVCache]:
        """A sequence's caches: standalone (growing tensors), or over its engine blocks, continuing
        ``cached_tokens`` already there."""
        rows = paged.rows if paged is not None else growing_rows
        return [
            KVCache(rows(f"{i}.k", cached_tokens), rows(f"{i}.v", cached_tokens))
            for i in range(len(self.layers))
        ]

    def logits(
        self, input_ids: torch.Tensor, positions: torch.Tensor, seqs: list[SeqSlice], step: Step
    ) -> torch.Tensor:
        x = self.embed[input_ids]  # [T, hidden]
        cos, sin = cos_sin(positions, self.inv_freq)  # [T, D]
        for index, layer in enumerate(self.layers):
            caches = [s.state[index] for s in seqs]
            x = layer.forward(x, cos, sin, caches, step)  # type: ignore[operator]
        h = rms_norm(
            x[last_rows(step, x.device)], self.norm.weight, self.norm.eps, self.kernels
        )  # [N, hidden]
        return head_logits(h, self.lm_head.weight, self.kernels).float()

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy each tensor into its (slice of a) parameter; every parameter must end up filled."""
        filled: dict[int, int] = {}
        for key, tensor in dequantizing(weights, self.embed.dtype):
            target, index = self._target(key)
            view = target if index is None else target[index]
            if view.shape != tensor.shape:
                raise ValueError(
                    f"{key}: checkpoint shape {tuple(tensor.shape)}, model expects {tuple(view.shape)}"
                )
            with torch.no_grad():
                view.copy_(tensor)
            filled[id(target)] = filled.get(id(target), 0) + view.numel()
        if self.config.tie_word_embeddings and id(self.lm_head.weight) not in filled:
            self.lm_head.weight = self.embed
            filled[id(self.embed)] = filled.get(id(self.embed), 0)
        missing = [name for name, p in self.named_parameters() if filled.get(id(p), 0) < p.numel()]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ValueError(f"checkpoint is missing weights for {len(missing)} parameters: {shown}")

    def _target(self, key: str) -> tuple[torch.Tensor, Any]:
        name = key.removeprefix("model.")
        c = self.config
        if name in ("embed_tokens.weight", "lm_head.weight", "norm.weight"):
            return {
                "embed_tokens.weight": self.embed,
                "lm_head.weight": self.lm_head.weight,
                "norm.weight": self.norm.weight,
            }[name], None
        match = re.fullmatch(r"layers\.(\d+)\.(.+)", name)
        if not match or int(match.group(1)) >= len(self.layers):
            raise KeyError(f"unexpected weight {key!r} for {type(self).__name__}")
        layer: DecoderLayer = self.layers[int(match.group(1))]  # type: ignore[assignment]
        return _layer_target(layer, match.group(2), c, key)


def _layer_target(layer: DecoderLayer, rest: str, c: Qwen3MoeConfig, key: str) -> tuple[torch.Tensor, Any]:
    q, kv = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
    attn, mlp = layer.attn, layer.mlp
    fixed: dict[str, tuple[torch.Tensor, Any]] = {
        "input_layernorm.weight": (layer.input_norm.weight, None),
        "post_attention_layernorm.weight": (layer.post_norm.weight, None),
        "self_attn.q_proj.weight": (attn.qkv.weight, slice(0, q)),
        "self_attn.k_proj.weight": (attn.qkv.weight, slice(q, q + kv)),
        "self_attn.v_proj.weight": (attn.qkv.weight, slice(q + kv, q + 2 * kv)),
        "self_attn.o_proj.weight": (attn.o.weight, None),
        "self_attn.q_norm.weight": (attn.q_norm.weight, None),
        "self_attn.k_norm.weight": (attn.k_norm.weight, None),
    }
    if rest in fixed:
        return fixed[rest]
    if isinstance(mlp, SparseMoe):
        return _moe_target(mlp, rest, c, key)
    inter = c.intermediate_size
    dense = {
        "mlp.gate_proj.weight": (mlp.w13.weight, slice(0, inter)),
        "mlp.up_proj.weight": (mlp.w13.weight, slice(inter, 2 * inter)),
        "mlp.down_proj.weight": (mlp.w2.weight, None),
    }
    if rest not in dense:
        raise KeyError(f"unexpected weight {key!r} for a dense layer")
    return dense[rest]


def _moe_target(mlp: SparseMoe, rest: str, c: Qwen3MoeConfig, key: str) -> tuple[torch.Tensor, Any]:
    inter = c.moe_intermediate_size
    if rest == "mlp.gate.weight":
        return mlp.gate.weight, None
    if rest == "mlp.experts.gate_up_proj":  # fused spelling: [E, 2I, hidden]
        return mlp.w13, None
    if rest == "mlp.experts.down_proj":
        return mlp.w2, None
    match = re.fullmatch(r"mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight", rest)
    if not match or int(match.group(1)) >= c.num_experts:
        raise KeyError(f"unexpected weight {key!r} for a sparse layer")
    expert, which = int(match.group(1)), match.group(2)
    if which == "down":
        return mlp.w2, expert
    return mlp.w13, (expert, slice(0, inter) if which == "gate" else slice(inter, 2 * inter))
