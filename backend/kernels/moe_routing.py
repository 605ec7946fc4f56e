"""MoE routing in one launch per layer (Triton): scores, top-k, weights.

One program per token over all E experts (E <= 1024 in one block):

- ``softmax_topk`` (Qwen3): probabilities = softmax(logits) in float32, the k largest
  (ties to the lowest expert id), optionally renormalised to sum 1; weights in the
  logits' dtype, as ``layers/moe.py`` returns them.
- ``sqrt_softplus_route`` (DeepSeek-V4): s = sqrt(softplus(logits)) with logits float32;
  choose the top-k of s + bias, or take the given hash-table ids (``tid2eid[token]``);
  weights = chosen s / (their sum + 1e-20) x scale, float32, as ``models/deepseek_v4/moe.route``.

Top-k is k rounds of argmax-and-mask (k <= 16 in practice), in descending order like
``torch.topk``. softplus follows torch (identity above 20) with an accurate log1p.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _log1p(y):
    u = 1.0 + y
    return tl.where(
        u == 1.0, y, tl.log(u) * (y / tl.where(u == 1.0, 1.0, u - 1.0))
    )  # accurate log1p (Goldberg)


@triton.jit
def _route_kernel(
    logits_ptr,
    bias_ptr,
    hashed_ptr,
    weights_ptr,
    ids_ptr,
    E,
    stride_l,
    scale,
    K: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SQRT_SOFTPLUS: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HASHED: tl.constexpr,
    NORMALIZE: tl.constexpr,
    BLOCK_E: tl.constexpr,
):
    t = tl.program_id(0)
    e = tl.arange(0, BLOCK_E)
    valid = e < E
    x = tl.load(logits_ptr + t * stride_l + e, mask=valid, other=0.0).to(tl.float32)
    if SQRT_SOFTPLUS:
        soft = tl.where(x > 20.0, x, tl.maximum(x, 0.0) + _log1p(tl.exp(-tl.abs(x))))
        score = tl.sqrt_rn(soft)
    else:
        z = tl.where(valid, x, float("-inf"))
        p = tl.exp(z - tl.max(z, axis=0))
        score = tl.div_rn(p, tl.sum(p, axis=0))
    rank = score
    if HAS_BIAS:
        rank = rank + tl.load(bias_ptr + e, mask=valid, other=0.0).to(tl.float32)
    rank = tl.where(valid, rank, float("-inf"))
    k = tl.arange(0, BLOCK_K)
    chosen_ids = tl.zeros([BLOCK_K], dtype=tl.int32)
    chosen_w = tl.zeros([BLOCK_K], dtype=tl.float32)
    for j in tl.static_range(K):
        if HASHED:
            best = tl.load(hashed_ptr + t * K + j).to(tl.int32)
        else:
            best = tl.argmax(rank, axis=0).to(tl.int32)
            rank = tl.where(e == best, float("-inf"), rank)
        w = tl.sum(tl.where(e == best, score, 0.0), axis=0)
        chosen_ids = tl.where(k == j, best, chosen_ids)
        chosen_w = tl.where(k == j, w, chosen_w)
    if SQRT_SOFTPLUS:
        chosen_w = tl.div_rn(chosen_w, tl.sum(chosen_w, axis=0) + 1e-20) * scale
    elif NORMALIZE:
        chosen_w = tl.div_rn(chosen_w, tl.sum(chosen_w, axis=0))
    tl.store(ids_ptr + t * K + k, chosen_ids, mask=k < K)
    tl.store(weights_ptr + t * K + k, chosen_w.to(weights_ptr.dtype.element_ty), mask=k < K)


def _launch(logits, k, *, sqrt_softplus, bias=None, hashed=None, normalize=False, scale=1.0, out_dtype):
    t, e = logits.shape
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    weights = torch.empty(t, k, dtype=out_dtype, device=logits.device)
    ids = torch.empty(t, k, dtype=torch.int32, device=logits.device)
    if hashed is not None:
        hashed = hashed.to(torch.int32).contiguous()
    if t:
        _route_kernel[(t,)](
            logits,
            bias if bias is not None else logits,
            hashed if hashed is not None else ids,
            weights,
            ids,
            e,
            logits.stride(0),
            float(scale),
            K=k,
            BLOCK_K=triton.next_power_of_2(k),
            SQRT_SOFTPLUS=sqrt_softplus,
            HAS_BIAS=bias is not None,
            HASHED=hashed is not None,
            NORMALIZE=normalize,
            BLOCK_E=triton.next_power_of_2(e),
        )
    return weights, ids


def softmax_topk(logits: torch.Tensor, k: int, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [T, E] -> weights [T, k] (logits' dtype), expert ids [T, k] int32."""
    return _launch(logits, k, sqrt_softplus=False, normalize=normalize, out_dtype=logits.dtype)


def sqrt_softplus_route(
    logits: torch.Tensor, bias: torch.Tensor | None, hashed: torch.Tensor | None, k: int, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [T, E] float32; bias [E] or hashed ids [T, k] -> weights [T, k] float32, ids [T, k] int32."""
    return _launch(
        logits.float(), k, sqrt_softplus=True, bias=bias, hashed=hashed, scale=scale, out_dtype=torch.float32
    )
