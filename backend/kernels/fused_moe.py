"""Fused mixture-of-experts: align, two grouped GEMMs, combine; four launches per layer.

``fused_moe(x, w13, w2, weights, ids)`` takes routed tokens (``moe_routing``) and runs
``moe_align`` (pairs sorted by expert, padded to BLOCK_M), ``gate_up_kernel`` (activation
fused), ``down_kernel`` and ``combine_kernel`` (the k pairs of each token summed, plus a
shared expert's output when given). Tile sizes come from ``tile_configs`` (tuned table or
heuristic), chosen per number of tokens, expert width and device.

Two numerics, matching the two references:

- Qwen3 (``layers/moe.experts_forward``): SiLU-gated, the routing weight applied after
  the down projection in the activation dtype, the k outputs summed in float32 and
  rounded once (as torch's ``sum`` over k does);
- DeepSeek-V4 (``models/deepseek_v4/moe.routed_experts``): clamped SwiGLU and the weight in
  float32 before the down projection, the sum in float32 (``clamped=True``).

Expert weights may be quantized (``QuantizedExperts``: FP8 e4m3 with 128x128 block
scales, or FP4 e2m1 with a scale per 32 inputs, as in ``backend/quant.py``; or the
loader's ``packed_weights.PackedExperts``, same layout, scales possibly UE8M0 exponent bytes);
they are decoded inside the GEMM tiles. Limits: no expert parallelism; the per-pair float32
buffer [T * k, H] is materialised between the down GEMM and the combine (a deterministic
sum, where an atomic add would make float32 results depend on scheduling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton

from codeagent.backend.kernels import moe_align
from codeagent.backend.kernels.common import INTERPRETING, upcast
from codeagent.backend.kernels.moe_gemm import FP4, FP8, PLAIN, combine_kernel, down_kernel, gate_up_kernel
from codeagent.backend.kernels.tile_configs import Config, moe_config
from codeagent.backend.packed_weights import PackedExperts
from codeagent.backend.quant import FP4_GROUP, FP8_BLOCK, scale_values


@dataclass(frozen=True, slots=True)
class QuantizedExperts:
    """Expert weights kept packed: ``weight`` [E, N, K] e4m3 or [E, N, K/2] uint8 (FP4), ``scale``
    [E, N, K / group] float32 or UE8M0 exponent bytes (uint8), FP8 block scales expanded to
    every row of their block."""

    weight: torch.Tensor
    scale: torch.Tensor
    format: int  # FP8 or FP4

    @property
    def group(self) -> int:
        return FP8_BLOCK if self.format == FP8 else FP4_GROUP

    @property
    def in_features(self) -> int:
        return self.weight.shape[2] * (2 if self.format == FP4 else 1)

    @property
    def out_features(self) -> int:
        return self.weight.shape[1]

    @property
    def name(self) -> str:
        return "fp8" if self.format == FP8 else "fp4"

    @classmethod
    def fp8(cls, weight: torch.Tensor, block_scale: torch.Tensor) -> QuantizedExperts:
        """weight [E, N, K] e4m3, block_scale [E, ceil(N/128), ceil(K/128)] (UE8M0 or float)."""
        per_row = scale_values(block_scale).repeat_interleave(FP8_BLOCK, dim=1)[:, : weight.shape[1]]
        return cls(weight.contiguous(), per_row.contiguous(), FP8)

    @classmethod
    def fp4(cls, packed: torch.Tensor, scale: torch.Tensor) -> QuantizedExperts:
        """packed [E, N, K/2] (two e2m1 codes a byte), scale [E, N, K/32] (UE8M0 or float)."""
        return cls(packed.contiguous().view(torch.uint8), scale_values(scale).contiguous(), FP4)


Weights = torch.Tensor | QuantizedExperts | PackedExperts


def _operands(w: Weights) -> tuple[torch.Tensor, torch.Tensor, int, int, int, str]:
    """(weight, scale, format, group, in_features, name) for the kernels."""
    if isinstance(w, PackedExperts):
        w = QuantizedExperts(w.weight, w.scale, FP8 if w.format == "fp8" else FP4)
    if isinstance(w, QuantizedExperts):
        return w.weight, w.scale, w.format, w.group, w.in_features, w.name
    return w, w, PLAIN, 1, w.shape[2], "plain"


def fused_moe(
    x: torch.Tensor,
    w13: Weights,
    w2: Weights,
    weights: torch.Tensor,
    ids: torch.Tensor,
    *,
    clamped: bool = False,
    limit: float = 0.0,
    shared: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
    config: Config | None = None,
) -> torch.Tensor:
    """x [T, H]; w13 [E, 2I, H]; w2 [E, H, I]; weights, ids [T, k] -> [T, H] in out_dtype (default x's)."""
    t, hidden = x.shape
    topk = ids.shape[1]
    w13_t, s13, fmt13, group13, k13, name = _operands(w13)
    w2_t, s2, fmt2, group2, k2, _ = _operands(w2)
    experts, inter = w13_t.shape[0], w13_t.shape[1] // 2
    if k13 != hidden or k2 != inter or w2_t.shape[1] != hidden:
        raise ValueError(f"expert weights do not fit x [{t}, {hidden}]")
    out = torch.empty(t, hidden, dtype=out_dtype or x.dtype, device=x.device)
    if t == 0:
        return out
    x = x if x.stride(-1) == 1 else x.contiguous()
    cfg = config or moe_config(t, experts, topk, inter, hidden, x.dtype, name, x.device, INTERPRETING)
    bm, bn, bk = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_K"]
    launch = {"num_warps": cfg.get("num_warps", 4), "num_stages": cfg.get("num_stages", 2)}
    sort = moe_align.align if ids.numel() <= moe_align.ONE_PROGRAM_PAIRS else moe_align.align_ref
    sorted_pairs, block_expert = sort(ids, experts, bm)
    tiles, pairs = block_expert.shape[0], t * topk
    flat_w = weights.reshape(-1).contiguous()
    h = torch.empty(pairs, inter, dtype=x.dtype, device=x.device)
    gate_up_kernel[(tiles, triton.cdiv(inter, bn))](
        x, w13_t, s13, sorted_pairs, block_expert, flat_w, h,
        pairs, inter, hidden, x.stride(0), w13_t.stride(0), w13_t.stride(1), s13.stride(0), s13.stride(1),
        float(limit), TOPK=topk, CLAMPED=clamped, WEIGHT_IN_ACT=clamped, FORMAT=fmt13, GROUP=group13, UPCAST=upcast(),
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, **launch,
    )  # fmt: skip
    per_pair = torch.empty(pairs, hidden, dtype=torch.float32, device=x.device)
    down_kernel[(tiles, triton.cdiv(hidden, bn))](
        h, w2_t, s2, sorted_pairs, block_expert, flat_w, per_pair,
        pairs, hidden, inter, w2_t.stride(0), w2_t.stride(1), s2.stride(0), s2.stride(1),
        TOPK=topk, WEIGHT_AFTER=not clamped, FORMAT=fmt2, GROUP=group2, UPCAST=upcast(),
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, **launch,
    )  # fmt: skip
    block_n = min(1024, triton.next_power_of_2(hidden))
    combine_kernel[(t, triton.cdiv(hidden, block_n))](
        per_pair, shared if shared is not None else per_pair, out, hidden,
        TOPK=topk, HAS_SHARED=shared is not None, BLOCK_N=block_n,
    )  # fmt: skip
    return out
