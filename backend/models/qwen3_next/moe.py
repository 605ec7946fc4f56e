"""Qwen3-Next's feed-forward blocks: the sparse MoE with a sigmoid-gated shared expert, and the
dense SiLU MLP of the layers ``mlp_only_layers`` / ``decoder_sparse_step`` leave dense.

``SparseMoe``: softmax top-k routing (renormalised when ``norm_topk_prob``, always for
Qwen3.5) over routed experts stored fused as ``w13`` [E, 2I, hidden] and ``w2`` [E, hidden, I]
(``layers/moe.py``'s layout and kernels), plus one shared expert that every token takes,
scaled by sigmoid(``shared_gate`` · x), a per-token scalar. Output: routed + gated shared.

The routed experts may be held packed (``packed_weights.PackedExperts``: as an FP8 release ships them,
``packed.py``, or as ``--pack`` converts them, ``backend/packing.py``), and the shared expert's
and dense MLPs' ``Linear`` weights as ``packed_weights.PackedWeight``; ``layers/moe.py`` and
``layers/linear.py`` run them (the native packed kernels for CPU decode batches, else decoded
for the call). The routers (``gate``, ``shared_gate``) always stay plain.

Limits: one process; no experts in host memory (``--cpu-experts``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from codeagent.backend.kernels.dispatch import Kernels
from codeagent.backend.layers.linear import Linear, empty_param
from codeagent.backend.layers.moe import experts_forward, silu_and_mul, softmax_topk
from codeagent.backend.models.qwen3_next.config import Qwen3NextConfig


class DenseMlp(nn.Module):
    """A SiLU-gated MLP: ``w13`` [2I, hidden] (gate rows, then up rows), ``w2`` [hidden, I]."""

    def __init__(self, hidden: int, width: int, dtype: torch.dtype, device: Any) -> None:
        super().__init__()
        self.w13 = Linear(hidden, 2 * width, dtype, device)
        self.w2 = Linear(width, hidden, dtype, device)

    def forward(self, x: torch.Tensor, kernels: Kernels) -> torch.Tensor:
        return self.w2.forward(silu_and_mul(self.w13.forward(x, kernels)), kernels)


class SparseMoe(nn.Module):
    def __init__(self, c: Qwen3NextConfig, dtype: torch.dtype, device: Any) -> None:
        super().__init__()
        self.top_k, self.normalize = c.num_experts_per_tok, c.norm_topk_prob
        hidden, width = c.hidden_size, c.moe_intermediate_size
        self.gate = Linear(hidden, c.num_experts, dtype, device)
        self.w13 = empty_param(c.num_experts, 2 * width, hidden, dtype=dtype, device=device)
        self.w2 = empty_param(c.num_experts, hidden, width, dtype=dtype, device=device)
        self.shared = DenseMlp(hidden, c.shared_expert_intermediate_size, dtype, device)
        self.shared_gate = Linear(hidden, 1, dtype, device)

    def forward(self, x: torch.Tensor, kernels: Kernels) -> torch.Tensor:
        weights, ids = softmax_topk(self.gate.forward(x, kernels), self.top_k, self.normalize, kernels)
        routed = experts_forward(x, self.w13, self.w2, weights, ids, kernels)  # [T, hidden]
        shared = self.shared.forward(x, kernels) * torch.sigmoid(self.shared_gate.forward(x, kernels))
        return routed + shared
