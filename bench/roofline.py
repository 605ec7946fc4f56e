"""What a decode step must read and what a prefill must compute, from a model's config alone.

The bandwidth roofline of a decode step is the bytes it cannot avoid reading once,
divided by the bandwidth the device really sustains (a measured device-to-device copy):

- weights: every dense weight in full (attention, routers, shared experts, norms, the LM
  head); of each MoE layer's routed experts only those the step's B tokens choose,
  E·(1 − (1 − k/E)^B) of E in expectation under uniform routing (exactly k at B = 1); the
  B rows of the embedding (and of V4's hash-routing tables) the tokens look up;
- state: per sequence, what attention reads at its context C. Qwen3: keys and values of
  all C tokens in every layer. DeepSeek-V4: per layer the window's latents (min(C, W));
  heavily compressed (HCA) layers every visible entry (C // rate); compressed sparse
  (CSA) layers every visible indexer key (C // 4, index_head_dim wide) and the top-k
  entries chosen (min(C // 4, index_topk)). Qwen3-Next: keys and values of all C tokens
  in its gated-attention layers; in its Gated DeltaNet layers a fixed state whatever C
  (the fp32 recurrent state [Hv, Dk, Dv] and the convolution's last taps).

Writes (the new KV rows) and activations are left out: negligible at these sizes.

Prefill FLOPs of one N-token prompt: 2 per matmul weight element per token (routed
experts k/E of theirs), attention's QK and PV (4·H·D per query-key pair, causal: query p
sees p + 1 tokens; V4: its window plus the chosen or visible entries, and the indexer's
2·heads·dim per visible key; Qwen3-Next: causal attention in its gated-attention layers,
4·Hv·Dk·Dv per token in its DeltaNet layers), and the LM head once (only the last token's logits).

Limits: uniform routing is an assumption (trained routers are skewed, so real batches
touch fewer experts than counted here); norms, rotary, softmax, V4's compressor pooling
and mHC's Sinkhorn iterations count no FLOPs; tied embeddings would be counted twice
(neither released configuration ties them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from codeagent.backend.models.deepseek_v4.config import CSA, HCA, SLIDING, DeepseekV4Config
from codeagent.backend.models.deepseek_v4.weights import storage_dtype, weight_shapes
from codeagent.backend.models.qwen3_moe import Qwen3MoeConfig
from codeagent.backend.models.qwen3_next import Qwen3NextConfig, Qwen3NextForCausalLM
from codeagent.backend.models.qwen3_next.config import FULL


@dataclass(frozen=True, slots=True)
class Weight:
    name: str
    shape: tuple[int, ...]
    itemsize: int  # bytes per element as stored
    kind: str  # "dense" (read in full), "expert" (routed: E on dim 0), "rows" (looked up per token), "head"
    matmul: bool  # multiplies each token's activations (2 FLOPs per element per token)

    @property
    def numel(self) -> int:
        n = 1
        for size in self.shape:
            n *= size
        return n

    @property
    def bytes(self) -> int:
        return self.numel * self.itemsize


def inventory(config: Any, dtype: torch.dtype) -> list[Weight]:
    """Every weight of the model as the runtime stores it."""
    if isinstance(config, Qwen3MoeConfig):
        return _qwen3_inventory(config, dtype.itemsize)
    if isinstance(config, DeepseekV4Config):
        return _v4_inventory(config, dtype)
    if isinstance(config, Qwen3NextConfig):
        return _next_inventory(config, dtype)
    raise TypeError(f"no cost model for {type(config).__name__}")


def _qwen3_inventory(c: Qwen3MoeConfig, itemsize: int) -> list[Weight]:
    h, d = c.hidden_size, c.head_dim
    out = [
        Weight("embed", (c.vocab_size, h), itemsize, "rows", False),
        Weight("norm", (h,), itemsize, "dense", False),
        Weight("lm_head", (c.vocab_size, h), itemsize, "head", False),
    ]
    for i in range(c.num_hidden_layers):
        p = f"layers.{i}."
        out += [
            Weight(p + "input_norm", (h,), itemsize, "dense", False),
            Weight(p + "post_norm", (h,), itemsize, "dense", False),
            Weight(
                p + "qkv",
                ((c.num_attention_heads + 2 * c.num_key_value_heads) * d, h),
                itemsize,
                "dense",
                True,
            ),
            Weight(p + "o", (h, c.num_attention_heads * d), itemsize, "dense", True),
            Weight(p + "q_norm", (d,), itemsize, "dense", False),
            Weight(p + "k_norm", (d,), itemsize, "dense", False),
        ]
        if c.is_sparse(i):
            e, inter = c.num_experts, c.moe_intermediate_size
            out += [
                Weight(p + "gate", (e, h), itemsize, "dense", True),
                Weight(p + "w13", (e, 2 * inter, h), itemsize, "expert", True),
                Weight(p + "w2", (e, h, inter), itemsize, "expert", True),
            ]
        else:
            inter = c.intermediate_size
            out += [
                Weight(p + "w13", (2 * inter, h), itemsize, "dense", True),
                Weight(p + "w2", (h, inter), itemsize, "dense", True),
            ]
    return out


def _v4_inventory(c: DeepseekV4Config, dtype: torch.dtype) -> list[Weight]:
    out = []
    for name, shape in weight_shapes(c).items():
        itemsize = storage_dtype(name, dtype).itemsize
        if name.endswith(("ffn.w13", "ffn.w2")):
            kind = "expert"
        elif name == "embed.weight" or name.endswith("tid2eid"):
            kind = "rows"
        elif name == "head.weight":
            kind = "head"
        else:
            kind = "dense"
        matmul = kind in ("dense", "expert") and len(shape) >= 2 and not name.endswith("ape")
        out.append(Weight(name, shape, itemsize, kind, matmul))
    return out


def _next_inventory(c: Qwen3NextConfig, dtype: torch.dtype) -> list[Weight]:
    """Qwen3-Next's weights as the model declares them, built on the meta device (no memory)."""
    out = []
    for name, p in Qwen3NextForCausalLM(c, dtype=dtype, device="meta").named_parameters():
        if name.startswith("embed"):
            kind = "rows"
        elif name.startswith("lm_head"):
            kind = "head"
        else:
            kind = "expert" if p.dim() == 3 and p.shape[0] == c.num_experts else "dense"
        matmul = kind in ("dense", "expert") and p.dim() >= 2 and not name.endswith("conv")
        out.append(Weight(name, tuple(p.shape), p.element_size(), kind, matmul))
    return out


def weight_bytes(config: Any, dtype: torch.dtype) -> int:
    """Bytes of every weight: what building the model allocates."""
    return sum(w.bytes for w in inventory(config, dtype))


def routed(config: Any) -> tuple[int, int]:
    """(routed experts per layer E, experts chosen per token k)."""
    if isinstance(config, Qwen3MoeConfig | Qwen3NextConfig):
        return config.num_experts, config.num_experts_per_tok
    return config.n_routed_experts, config.num_experts_per_tok


def distinct_experts(experts: int, k: int, tokens: int) -> float:
    """Expected experts chosen by at least one of ``tokens`` tokens, each picking k of E uniformly."""
    return experts * (1.0 - (1.0 - k / experts) ** tokens)


def decode_weight_bytes(config: Any, dtype: torch.dtype, batch: int) -> float:
    """Weight bytes one decode step of ``batch`` sequences reads."""
    experts, k = routed(config)
    share = distinct_experts(experts, k, batch) / experts
    total = 0.0
    for w in inventory(config, dtype):
        if w.kind == "expert":
            total += w.bytes * share
        elif w.kind == "rows":
            total += min(batch, w.shape[0]) * (w.bytes / w.shape[0])
        else:
            total += w.bytes
    return total


def kv_read_bytes(config: Any, dtype: torch.dtype, context: int) -> float:
    """State bytes one sequence's attention reads at a context of ``context`` tokens, all layers."""
    size = dtype.itemsize
    if isinstance(config, Qwen3MoeConfig):
        return config.num_hidden_layers * 2 * config.num_key_value_heads * config.head_dim * size * context
    if isinstance(config, Qwen3NextConfig):
        full = config.layer_types.count(FULL)
        linear = config.num_hidden_layers - full
        channels = 2 * config.linear_num_key_heads * config.linear_key_head_dim + _value_width(config)
        state = 4 * _value_width(config) * config.linear_key_head_dim  # fp32 [Hv, Dk, Dv]
        conv = channels * (config.linear_conv_kernel_dim - 1) * size
        return float(
            full * 2 * config.num_key_value_heads * config.head_dim * size * context + linear * (state + conv)
        )
    c: DeepseekV4Config = config
    total = 0
    for i, kind in enumerate(c.layer_types):
        rows = min(context, c.sliding_window)
        if kind == HCA:
            rows += context // c.rate(i)
        elif kind == CSA:
            visible = context // c.rate(i)
            rows += min(visible, c.index_topk)
            total += visible * c.index_head_dim * size
        total += rows * c.head_dim * size
    return float(total)


def decode_bytes(config: Any, dtype: torch.dtype, batch: int, context: int) -> float:
    """Bytes a decode step of ``batch`` sequences at ``context`` tokens each must read."""
    return decode_weight_bytes(config, dtype, batch) + batch * kv_read_bytes(config, dtype, context)


def prefill_flops(config: Any, tokens: int) -> float:
    """FLOPs of prefilling one prompt of ``tokens`` tokens (see the module docstring)."""
    experts, k = routed(config)
    per_token = 0.0
    head = 0.0
    for w in inventory(config, torch.bfloat16):
        if w.kind == "head":
            head += 2.0 * w.numel
        elif w.matmul:
            per_token += 2.0 * w.numel * (k / experts if w.kind == "expert" else 1.0)
    return per_token * tokens + _attention_flops(config, tokens) + head


def _attention_flops(config: Any, tokens: int) -> float:
    seen = torch.arange(1, tokens + 1, dtype=torch.float64)  # query p sees p + 1 tokens
    if isinstance(config, Qwen3MoeConfig):
        pairs = float(seen.sum())
        return config.num_hidden_layers * 4.0 * config.num_attention_heads * config.head_dim * pairs
    if isinstance(config, Qwen3NextConfig):
        full = config.layer_types.count(FULL)
        recurrent = (
            4.0 * _value_width(config) * config.linear_key_head_dim * tokens
        )  # state update + read-out
        linear = config.num_hidden_layers - full
        return (
            full * 4.0 * config.num_attention_heads * config.head_dim * float(seen.sum()) + linear * recurrent
        )
    c: DeepseekV4Config = config
    per_pair = 4.0 * c.num_attention_heads * c.head_dim
    total = 0.0
    for i, kind in enumerate(c.layer_types):
        pairs = seen.clamp(max=c.sliding_window)
        if kind != SLIDING:
            visible = torch.div(seen, c.rate(i), rounding_mode="floor")
            if kind == CSA:
                total += 2.0 * c.index_n_heads * c.index_head_dim * float(visible.sum())
                visible = visible.clamp(max=c.index_topk)
            pairs = pairs + visible
        total += per_pair * float(pairs.sum())
    return total


def _value_width(c: Qwen3NextConfig) -> int:
    return c.linear_num_value_heads * c.linear_value_head_dim
