"""The kernels' entry points, as the layers call them (imported on first use by ``dispatch``)."""

from __future__ import annotations

import torch

from codeagent.backend.kernels import gated_delta, indexer, norm, rotary
from codeagent.backend.kernels.compressor import pool_windows
from codeagent.backend.kernels.fused_moe import QuantizedExperts, fused_moe
from codeagent.backend.kernels.gated_delta import decode_step as gated_delta_step
from codeagent.backend.kernels.gated_delta import prefill as chunk_gated_delta_rule_varlen
from codeagent.backend.kernels.indexer import selection as indexer_selection
from codeagent.backend.kernels.mhc import hc_weights
from codeagent.backend.kernels.moe_routing import softmax_topk, sqrt_softplus_route
from codeagent.backend.kernels.norm import rms_norm
from codeagent.backend.kernels.paged_attention import step as paged_attention_step
from codeagent.backend.kernels.rotary import apply_rotary
from codeagent.backend.kernels.sampling import sample
from codeagent.backend.kernels.sink_attention import masked_sink_attention


def rms_norm_weight_first(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """DeepSeek-V4's RMSNorm: the float32 weight multiplies before the cast."""
    return norm.rms_norm(x, weight, eps, rounding=norm.WEIGHT_FIRST)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(RMSNorm(residual + x), residual + x) in one pass."""
    return norm.rms_norm(x, weight, eps, residual=residual)  # type: ignore[return-value]


def unweighted_rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    return norm.rms_norm(x, None, eps, rounding=norm.SCALE_IN_DTYPE)


def indexer_scores(
    q: torch.Tensor, keys: torch.Tensor, head_weights: torch.Tensor, all_heads: int
) -> torch.Tensor:
    """One rank's heads' share of the indexer's scores [T, N] (summed over the ranks before the top-k)."""
    return indexer.scores(q, keys, head_weights, all_heads=all_heads)[0]


def chunk_gated_delta_rule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    state: torch.Tensor,
    chunk: int = gated_delta.CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One sequence's prefill, as ``layers.gated_delta.chunk_gated_delta_rule``: state [H, Dk, Dv]
    float32 -> (out [T, H, Dv], the new state)."""
    out, final = gated_delta.prefill(q, k, v, g, beta, state.unsqueeze(0), [0, q.shape[0]], chunk)
    return out, final[0]


def apply_interleaved_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return rotary.apply_rotary(x, cos, sin, interleaved=True)


__all__ = [
    "QuantizedExperts",
    "add_rms_norm",
    "apply_interleaved_rope",
    "apply_rotary",
    "chunk_gated_delta_rule",
    "chunk_gated_delta_rule_varlen",
    "fused_moe",
    "gated_delta_step",
    "hc_weights",
    "indexer_scores",
    "indexer_selection",
    "masked_sink_attention",
    "paged_attention_step",
    "pool_windows",
    "rms_norm",
    "rms_norm_weight_first",
    "sample",
    "softmax_topk",
    "sqrt_softplus_route",
    "unweighted_rms_norm",
]
