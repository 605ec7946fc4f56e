"""Mixture-of-experts: softmax top-k routing and SiLU-gated experts (torch reference).

Experts are stored fused per layer, ready for a grouped-GEMM kernel: ``w13`` [E, 2I, H]
(gate rows, then up rows) and ``w2`` [E, H, I]. The reference sorts token-expert pairs by
expert and runs one pair of matmuls per expert that received tokens. With the model's
``Kernels``, the fused-MoE Triton kernel or, for decode-sized CPU batches, the native one; the
router's softmax top-k is Triton's or, on CPU, the native one (``native_rows``: the same
probabilities up to their last bit, and the same for a row whatever batch it is in).

Experts may also stay packed (``packed_weights.PackedExperts``: FP8 or FP4 as released, or as an
opt-in conversion writes them): decode-sized CPU batches then run the native packed kernel
(``kernels/native_packed.moe_packed``: the whole layer in one call, never a decoded copy),
Triton its fused kernel (which decodes in its tiles); otherwise one routed expert at a time
is decoded (natively where the packed kernels run) and multiplied (``packed_experts``, also
the hook for DeepSeek-V4's clamped SwiGLU through ``limit``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from codeagent.backend.kernels.dispatch import REFERENCE, Kernels
from codeagent.backend.kernels.native_build import NativeCall
from codeagent.backend.packed_weights import PackedExperts

Experts = torch.Tensor | PackedExperts


def softmax_topk(
    logits: torch.Tensor, k: int, normalize: bool, kernels: Kernels = REFERENCE
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [T, E] -> weights [T, k] (in logits' dtype), expert ids [T, k]."""
    if kernels.triton is not None:
        return kernels.triton.softmax_topk(logits, k, normalize)
    if kernels.native is not None and kernels.native.fits_softmax_topk(logits, k):
        return kernels.native.softmax_topk(logits, k, normalize)
    probs = torch.softmax(logits, dim=-1, dtype=torch.float32)
    weights, ids = torch.topk(probs, k, dim=-1)
    if normalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights.to(logits.dtype), ids


def bound_experts(
    x: torch.Tensor,
    w13: Experts,
    w2: Experts,
    weights: torch.Tensor,
    ids: torch.Tensor,
    out: torch.Tensor,
    kernels: Kernels,
) -> NativeCall | None:
    """The native call ``experts_forward`` would make for this layer (no ``limit``), bound into
    ``out`` for a decode program (weights float32 holding values of x's dtype, as
    ``native.softmax_topk_call`` writes them; ids int64); None where it would run no native kernel."""
    if isinstance(w13, PackedExperts) or isinstance(w2, PackedExperts):
        packed = kernels.packed
        if (
            packed is not None
            and isinstance(w13, PackedExperts)
            and isinstance(w2, PackedExperts)
            and packed.fits_moe_packed(x, w13, w2, ids)
        ):
            return packed.moe_packed_call(x, w13, w2, weights, ids, out)
        return None
    if kernels.triton is None and kernels.native is not None and kernels.native.fits_moe(x, w13, w2, ids):
        return kernels.native.moe_call(x, w13, w2, weights, ids, out)
    return None


def silu_and_mul(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


def experts_forward(
    x: torch.Tensor,
    w13: Experts,
    w2: Experts,
    weights: torch.Tensor,
    ids: torch.Tensor,
    kernels: Kernels = REFERENCE,
) -> torch.Tensor:
    """x [T, H]; w13 [E, 2I, H]; w2 [E, H, I] (plain or packed); weights, ids [T, k] -> [T, H].

    Token-expert pairs are sorted by expert once; the two projections run as grouped matmuls
    over the experts' contiguous row ranges when most experts have rows and PyTorch has them
    on this device (else one pair of matmuls per expert that has rows), into one buffer that
    is unsorted once and summed over k (no per-expert scatter-add). Decode-sized CPU batches
    run the whole layer in one native call instead (``kernels/native.c``). Packed experts
    run ``packed_experts``.
    """
    if kernels.triton is not None:
        return kernels.triton.fused_moe(x, w13, w2, weights, ids)
    if isinstance(w13, PackedExperts) or isinstance(w2, PackedExperts):
        return packed_experts(x, w13, w2, weights, ids, kernels)
    if kernels.native is not None and kernels.native.fits_moe(x, w13, w2, ids):
        return kernels.native.moe(x, w13, w2, weights, ids)
    t, k = ids.shape
    if t == 1:  # one token (decode at batch 1): its k experts directly, no sort or scatter
        out = torch.zeros_like(x)
        for expert, weight in zip(ids[0].tolist(), weights[0].tolist(), strict=True):
            out.add_(F.linear(silu_and_mul(F.linear(x, w13[expert])), w2[expert]), alpha=weight)
        return out
    flat_ids = ids.reshape(-1)
    order = torch.argsort(flat_ids, stable=True)
    counts = torch.bincount(flat_ids, minlength=w13.shape[0])
    inputs = x[order // k]  # [T*k, H], grouped by expert
    per_expert = counts.tolist()
    # PyTorch's CPU grouped matmul visits every expert, so it pays only when most have rows
    if 2 * sum(1 for c in per_expert if c) >= len(per_expert) and grouped_mm_available(x):
        out = _grouped(inputs, w13, w2, counts)
    else:
        out = _per_expert(inputs, w13, w2, per_expert)
    out = out * weights.reshape(-1)[order, None].to(out.dtype)
    unsorted = torch.empty_like(out).index_copy_(0, order, out)
    return unsorted.view(t, k, -1).sum(dim=1)


def packed_experts(
    x: torch.Tensor,
    w13: Experts,
    w2: Experts,
    weights: torch.Tensor,
    ids: torch.Tensor,
    kernels: Kernels = REFERENCE,
    limit: float | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``experts_forward`` over packed experts -> [T, H] in ``out_dtype`` (default x's): the
    native packed kernel where it takes the batch, else each routed expert decoded in turn.
    With ``limit``, DeepSeek-V4's SwiGLU: the gate clamped above at ``limit``, up to
    [-limit, limit]."""
    if (
        kernels.packed is not None
        and isinstance(w13, PackedExperts)
        and isinstance(w2, PackedExperts)
        and kernels.packed.fits_moe_packed(x, w13, w2, ids)
    ):
        return kernels.packed.moe_packed(x, w13, w2, weights, ids, limit, out_dtype)
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for e in torch.unique(ids).tolist():
        token, slot = torch.where(ids == e)
        gate, up = _expert(w13, e, x.dtype, kernels).chunk(2, dim=0)
        h = F.linear(x[token], gate), F.linear(x[token], up)
        if limit is not None:
            h = h[0].clamp(max=limit), h[1].clamp(min=-limit, max=limit)
        down = F.linear(F.silu(h[0]) * h[1], _expert(w2, e, x.dtype, kernels))
        out.index_add_(0, token, down.float() * weights[token, slot, None].float())
    return out.to(out_dtype or x.dtype)


def _expert(w: Experts, e: int, dtype: torch.dtype, kernels: Kernels) -> torch.Tensor:
    """Expert e's [N, K] weight: a view of plain storage, or decoded from packed storage now
    (natively where the packed kernels run)."""
    if isinstance(w, torch.Tensor):
        return w[e]
    if kernels.packed is not None and kernels.packed.fits_dequantize(w, dtype):
        return kernels.packed.dequantize_expert(w, e, dtype)
    return w.expert(e, dtype)


def _per_expert(inputs: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, counts: list[int]) -> torch.Tensor:
    out = torch.empty_like(inputs)
    start = 0
    for expert, count in enumerate(counts):
        if count == 0:
            continue
        rows = slice(start, start + count)
        out[rows] = F.linear(silu_and_mul(F.linear(inputs[rows], w13[expert])), w2[expert])
        start += count
    return out


def _grouped(inputs: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Both projections of every expert in one grouped matmul each (rows split by ``offs``)."""
    offs = counts.cumsum(0).to(torch.int32)
    h = torch._grouped_mm(inputs, w13.transpose(1, 2), offs=offs)
    return torch._grouped_mm(silu_and_mul(h), w2.transpose(1, 2), offs=offs)


_GROUPED: dict[tuple[str, torch.dtype], bool] = {}


def grouped_mm_available(x: torch.Tensor) -> bool:
    """Whether ``torch._grouped_mm`` (a private op, in PyTorch since 2.8) serves this device and
    dtype, found out once by trying it; the per-expert loop is used where it does not."""
    key = (x.device.type, x.dtype)
    if key not in _GROUPED:
        _GROUPED[key] = False
        if x.device.type == "cpu" and hasattr(torch, "_grouped_mm"):
            try:
                probe = torch.ones(2, 4, dtype=x.dtype)
                weights = torch.ones(2, 3, 4, dtype=x.dtype)
                got = torch._grouped_mm(
                    probe, weights.transpose(1, 2), offs=torch.tensor([1, 2], dtype=torch.int32)
                )
                _GROUPED[key] = bool(torch.equal(got, torch.full((2, 3), 4.0, dtype=x.dtype)))
            except (RuntimeError, TypeError, NotImplementedError):
                pass
    return _GROUPED[key]
