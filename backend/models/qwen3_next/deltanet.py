"""Qwen3-Next's Gated DeltaNet layer (linear attention) and a sequence's state for it.

Per token, one fused input projection ``in_proj`` [2·Hk·Dk + 2·Hv·Dv + 2·Hv, hidden] gives,
in this order, q (Hk·Dk), k (Hk·Dk), v (Hv·Dv) — the convolution's C channels — then the
output gate z (Hv·Dv), b and a (Hv each), every part head-major. (Checkpoints store it as
Qwen3-Next's ``in_proj_qkvz`` / ``in_proj_ba``, interleaved per key-head group, or as
Qwen3.5's separate ``in_proj_qkv`` / ``_z`` / ``_b`` / ``_a``; ``weights.py`` reorders both
into this layout, so one forward serves the two families.) Then:

1. q, k, v through the short causal depthwise convolution with SiLU (``conv`` [C, K]),
   continuing the sequence's conv state;
2. q and k L2-normalised per head in float32, q scaled by Dk ** -0.5 (the model scales,
   ``layers/gated_delta.py`` does not), both repeated to the Hv value heads (value head i
   reads key head i // (Hv / Hk));
3. decay g = -exp(A_log) * softplus(a + dt_bias) (float32, <= 0), beta = sigmoid(b);
4. the gated delta rule over the sequence's recurrent state [Hv, Dk, Dv] (float32): a prompt
   or chunk of more than one token in the chunked form, one token in the recurrent form,
   and a batch of decodes (every sequence one token) as one stacked step;
5. per head, RMSNorm of the output with a plain weight, times SiLU(z) (``gated_rms_norm``),
   then ``out_proj``.

``DeltaState`` is one sequence's state for one such layer: the conv state [C, K - 1] (its
last K - 1 inputs, in the model dtype: exact copies) and the recurrent state [Hv, Dk, Dv]
in float32, zeros for a fresh sequence; a forward replaces or updates them in place. They
live in the sequence's state object, outside the engine's pool; over the engine's pool a
state also has ``saved`` (``snapshots.py``): a forward that crosses a block boundary cuts the
sequence's tokens there and stores both states as of the boundary in that block's state
rows (where the block has them: one block in ``state_every``), from which a later sequence
with the same prefix resumes. Memory: per sequence and layer C·(K-1) model-dtype values and Hv·Dk·Dv·4 bytes,
2 MiB at Qwen3-Next-80B's shapes: 36 such layers hold ~72 MiB a sequence, outside the pool's budget.

Kernels: the model's ``Kernels`` choose per call (``_conv_ops`` / ``_rule_ops``): with Triton
(GPU) the decode step and each prompt piece's chunked rule run ``kernels/gated_delta.py``;
on CPU the native kernels (``kernels/native_recurrent.c``) run the decode step and the conv
(prompt and step) where their ``fits_*`` checks pass; otherwise the torch references of
``layers/gated_delta.py``, which stay the specification (and run the chunked rule on CPU).

Limits: a decode batch stacks its states and copies them back, where a slot pool would index
them in place; the prompt's pieces run one sequence at a time (the Triton rule takes a whole
flattened batch, ``chunk_gated_delta_rule_varlen``; not used yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from codeagent.backend.kernels.dispatch import Kernels
from codeagent.backend.layers import gated_delta as reference
from codeagent.backend.layers.gated_delta import recurrent_gated_delta_rule
from codeagent.backend.layers.linear import Linear, empty_param
from codeagent.backend.models.base import Step
from codeagent.backend.models.qwen3_next.config import Qwen3NextConfig
from codeagent.backend.models.qwen3_next.snapshots import Snapshots


@dataclass(slots=True)
class DeltaState:
    conv: torch.Tensor  # [C, K - 1]: the last K - 1 inputs of the convolution
    recurrent: torch.Tensor  # [Hv, Dk, Dv] float32
    length: int = 0  # tokens consumed
    saved: Snapshots | None = None  # where the states at block boundaries go (engine pool), if anywhere

    def resume(self, tokens: int) -> None:
        """Continue from the states saved after ``tokens`` (a block boundary)."""
        assert self.saved is not None
        self.conv, self.recurrent = self.saved.load(tokens)
        self.length = tokens


def l2_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x [..., D] -> x / sqrt(sum(x^2) + eps), in float32."""
    x = x.float()
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)


def gated_rms_norm(x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x, gate [..., D]; weight [D] -> RMSNorm(x) * weight * SiLU(gate) in x's dtype."""
    h = F.rms_norm(x.float(), (x.shape[-1],), None, eps).to(x.dtype) * weight
    return (h * F.silu(gate.float())).to(x.dtype)


class GatedDeltaNet(nn.Module):
    def __init__(self, c: Qwen3NextConfig, dtype: torch.dtype, device: Any) -> None:
        super().__init__()
        self.k_heads, self.v_heads = c.linear_num_key_heads, c.linear_num_value_heads
        self.k_dim, self.v_dim = c.linear_key_head_dim, c.linear_value_head_dim
        self.channels = 2 * self.k_heads * self.k_dim + self.v_heads * self.v_dim  # q, k, v
        self.taps, self.eps = c.linear_conv_kernel_dim, c.rms_norm_eps
        rows = self.channels + self.v_heads * self.v_dim + 2 * self.v_heads
        self.in_proj = Linear(c.hidden_size, rows, dtype, device)
        self.conv = empty_param(self.channels, self.taps, dtype=dtype, device=device)
        self.A_log = empty_param(self.v_heads, dtype=torch.float32, device=device)
        self.dt_bias = empty_param(self.v_heads, dtype=torch.float32, device=device)
        self.norm = empty_param(self.v_dim, dtype=dtype, device=device)
        self.out_proj = Linear(self.v_heads * self.v_dim, c.hidden_size, dtype, device)

    def fresh_state(self) -> DeltaState:
        device = self.conv.device
        return DeltaState(
            torch.zeros(self.channels, self.taps - 1, dtype=self.conv.dtype, device=device),
            torch.zeros(self.v_heads, self.k_dim, self.v_dim, dtype=torch.float32, device=device),
        )

    def forward(self, x: torch.Tensor, states: list[DeltaState], step: Step) -> torch.Tensor:
        t, hv, dv = x.shape[0], self.v_heads, self.v_dim
        qkv, z, b, a = self.in_proj.forward(x, step.kernels).split([self.channels, hv * dv, hv, hv], dim=-1)
        qkv = self._convolve(qkv, states, step.sizes, step.kernels)  # [T, C]
        kd = self.k_heads * self.k_dim
        q, k, v = qkv.split([kd, kd, hv * dv], dim=-1)
        repeat = hv // self.k_heads
        q = l2_normalize(q.reshape(t, self.k_heads, self.k_dim)) * self.k_dim**-0.5
        k = l2_normalize(k.reshape(t, self.k_heads, self.k_dim))
        if repeat > 1:
            q, k = q.repeat_interleave(repeat, dim=1), k.repeat_interleave(repeat, dim=1)  # [T, Hv, Dk]
        g = -self.A_log.exp() * F.softplus(a.float() + self.dt_bias)  # [T, Hv]
        out = self._recur(q, k, v.reshape(t, hv, dv), g, torch.sigmoid(b), states, step.sizes, step.kernels)
        for state, n in zip(states, step.sizes, strict=True):
            state.length += n
        out = gated_rms_norm(out, z.reshape(t, hv, dv), self.norm, self.eps)  # [T, Hv, Dv]
        return self.out_proj.forward(out.reshape(t, -1), step.kernels)

    def _convolve(
        self, x: torch.Tensor, states: list[DeltaState], sizes: list[int], kernels: Kernels
    ) -> torch.Tensor:
        """x [T, C] -> SiLU(causal conv) [T, C], each sequence continuing its conv state."""
        if len(sizes) == x.shape[0]:  # decode: one token a sequence
            stacked = torch.stack([s.conv for s in states])  # [B, C, K - 1]
            y = _conv_ops(kernels, x, self.conv, stacked).causal_conv1d_step(x, self.conv, stacked)
            for state, conv in zip(states, stacked, strict=True):
                state.conv.copy_(conv)
                if state.saved is not None and state.saved.cuts(state.length, 1):
                    state.saved.save(state.length + 1, state.conv, None)
            return y
        outs = []
        keep = self.taps - 1
        for state, part in zip(states, x.split(sizes), strict=True):
            if state.saved is not None:  # the conv state at a boundary: the window's K - 1 inputs before it
                window = torch.cat((state.conv.to(part.dtype), part.t()), dim=1)  # [C, K - 1 + n]
                for j in state.saved.cuts(state.length, part.shape[0]):
                    state.saved.save(state.length + j, window[:, j : j + keep].to(state.conv.dtype), None)
            ops = _conv_ops(kernels, part, self.conv, state.conv)
            y, state.conv = ops.causal_conv1d(part, self.conv, state.conv)
            outs.append(y)
        return torch.cat(outs)

    def _recur(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        g: torch.Tensor,
        beta: torch.Tensor,
        states: list[DeltaState],
        sizes: list[int],
        kernels: Kernels,
    ) -> torch.Tensor:
        """The gated delta rule for every sequence of the batch: [T, Hv, Dv] in v's dtype."""
        if len(sizes) == v.shape[0]:  # decode
            stacked = torch.stack([s.recurrent for s in states])  # [B, Hv, Dk, Dv]
            out = _step_ops(kernels, q, k, v, g, beta, stacked).gated_delta_step(q, k, v, g, beta, stacked)
            for state, recurrent in zip(states, stacked, strict=True):
                state.recurrent.copy_(recurrent)
                if state.saved is not None and state.saved.cuts(state.length, 1):
                    state.saved.save(state.length + 1, None, state.recurrent)
            return out
        outs = []
        parts = zip(
            q.split(sizes), k.split(sizes), v.split(sizes), g.split(sizes), beta.split(sizes), strict=True
        )
        for state, tensors in zip(states, parts, strict=True):
            count = tensors[0].shape[0]
            cuts = state.saved.cuts(state.length, count) if state.saved is not None else []
            edges = [0, *cuts] if cuts and cuts[-1] == count else [0, *cuts, count]
            for begin, end in pairwise(edges):  # the rule piece by piece, cut at boundaries
                qs, ks, vs, gs, bs = (part[begin:end] for part in tensors)
                chunked = (kernels.triton or reference).chunk_gated_delta_rule
                rule = recurrent_gated_delta_rule if end - begin == 1 else chunked
                out, state.recurrent = rule(qs, ks, vs, gs, bs, state.recurrent)
                outs.append(out)
                if state.saved is not None and end in cuts:
                    state.saved.save(state.length + end, None, state.recurrent)
        return torch.cat(outs)


def _conv_ops(kernels: Kernels, x: torch.Tensor, weight: torch.Tensor, state: torch.Tensor) -> Any:
    """Where a conv runs: the native CPU kernels where they take it, else the reference (Triton
    has no conv kernel: on a GPU the reference's depthwise conv1d is one launch)."""
    native = kernels.recurrent
    return native if native is not None and native.fits_conv(x, weight, state) else reference


def _step_ops(kernels: Kernels, *tensors: torch.Tensor) -> Any:
    """Where a decode step of the rule runs: Triton, the native CPU kernel where it fits, or the
    reference."""
    if kernels.triton is not None:
        return kernels.triton
    native = kernels.recurrent
    return native if native is not None and native.fits_gated_delta_step(*tensors) else reference
