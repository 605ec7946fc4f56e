"""Qwen3-Next's gated full attention, and the (1 + w) RMSNorm the family uses everywhere but
in its DeltaNet output.

``offset_rms_norm``: the family's RMSNorm weights are stored centred on zero and applied as
``1 + w``, the product taken in float32 before the cast back (the layer norms, the final
norm, and q/k's per-head norms; the gated norm after the recurrence is a plain ``w``).

``GatedAttention``: grouped-query attention whose query projection also carries an output
gate: per query head, ``q_proj`` gives D query dimensions then D gate dimensions (kept in
the checkpoint's layout, fused with k and v into ``qkv`` [2·H·D + 2·KVH·D, hidden]). q and k
get the per-head (1 + w) RMSNorm, then rotary on their first ``rotary_dim`` dimensions only
(rotate-half layout, the rest passed through). Attention runs over the sequence's KV rows
(``layers/attention.attend``: paged or growing, the engine's kernels where they fit), and
its output is multiplied by sigmoid(gate) before ``o_proj``.

Limits: one process (no tensor parallelism); norms and rotary run their torch forms (the
fused native norm+rope takes full rotary with a plain weight).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from codeagent.backend.layers.attention import KVCache, attend
from codeagent.backend.layers.linear import Linear, empty_param
from codeagent.backend.layers.rotary import apply_rotary
from codeagent.backend.models.base import Step
from codeagent.backend.models.qwen3_next.config import Qwen3NextConfig


def offset_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x [..., D], weight [D] stored centred on zero -> RMSNorm(x) * (1 + weight) in x's dtype."""
    h = F.rms_norm(x.float(), (x.shape[-1],), None, eps)
    return (h * (1.0 + weight.float())).to(x.dtype)


class OffsetRMSNorm(nn.Module):
    def __init__(self, size: int, eps: float, dtype: torch.dtype, device: Any) -> None:
        super().__init__()
        self.weight = empty_param(size, dtype=dtype, device=device)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return offset_rms_norm(x, self.weight, self.eps)


def partial_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [T, heads, D]; cos, sin [T, R] with R <= D: rotary on the first R dimensions."""
    rotary = cos.shape[-1]
    return torch.cat((apply_rotary(x[..., :rotary], cos, sin), x[..., rotary:]), dim=-1)


class GatedAttention(nn.Module):
    def __init__(self, c: Qwen3NextConfig, dtype: torch.dtype, device: Any) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        rows = (2 * self.heads + 2 * self.kv_heads) * self.head_dim
        self.qkv = Linear(c.hidden_size, rows, dtype, device)
        self.o = Linear(self.heads * self.head_dim, c.hidden_size, dtype, device)
        self.q_norm = OffsetRMSNorm(self.head_dim, c.rms_norm_eps, dtype, device)
        self.k_norm = OffsetRMSNorm(self.head_dim, c.rms_norm_eps, dtype, device)
        self.scale = self.head_dim**-0.5

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, caches: list[KVCache], step: Step
    ) -> torch.Tensor:
        t, d, kernels = x.shape[0], self.head_dim, step.kernels
        kv = self.kv_heads * d
        qg, k, v = self.qkv.forward(x, kernels).split([2 * self.heads * d, kv, kv], dim=-1)
        qg = qg.reshape(t, self.heads, 2 * d)  # per head: D query dims, then D gate dims
        q = partial_rotary(self.q_norm.forward(qg[..., :d]), cos, sin)  # [T, H, D]
        k = partial_rotary(self.k_norm.forward(k.reshape(t, self.kv_heads, d)), cos, sin)  # [T, KVH, D]
        v = v.reshape(t, self.kv_heads, d).contiguous()
        out = attend(q, k, v, caches, step.sizes, self.scale, step.tables, kernels)  # [T, H, D]
        gate = torch.sigmoid(qg[..., d:].reshape(t, -1))
        return self.o.forward(out.reshape(t, -1) * gate, kernels)
