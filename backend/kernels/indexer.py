"""DeepSeek-V4's Lightning indexer: scores over compressed keys and the top-k choice (Triton).

``scores`` computes s(t, w) = sum_h weight_h(t) * ReLU(q_h(t) . K_w) / sqrt(ID * IH) for
every query token and compressed entry, one program per (token, BLOCK_N entries), the
token's IH x ID queries against a tile of keys in one dot. With ``rate`` it also writes a
64-bit ranking key per entry: the score's order-preserving bits above the bit-inverted
entry index, and the lowest key for entries not yet closed at the query's position
(w >= (p + 1) // rate). All keys of a row are distinct, so ``torch.topk`` over them
(``select``) returns exactly the reference's choice: the k best scores, ties to the
lowest entry index, never an invisible entry. -0.0 is folded into +0.0 first (the
reference's sort treats them as equal).

Limits: the top-k itself is torch's (one launch; a radix select in Triton is left out).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from codeagent.backend.kernels.common import INTERPRETING, dot, next_pow2, upcast

LOWEST = -(2**63)
LOWEST_KEY = tl.constexpr(LOWEST)


@triton.jit
def _indexer_kernel(
    q_ptr, k_ptr, w_ptr, pos_ptr, score_ptr, key_ptr,
    N, IH, ID, rate, stride_qt, stride_qh, stride_k, stride_wt, scale,
    RANK: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    UPCAST: tl.constexpr,
):  # fmt: skip
    t, pid_n = tl.program_id(0), tl.program_id(1)
    h = tl.arange(0, BLOCK_H)
    d = tl.arange(0, BLOCK_D)
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = n < N
    q = tl.load(q_ptr + t * stride_qt + h[:, None] * stride_qh + d[None, :], mask=(h < IH)[:, None] & (d < ID)[None, :],
                other=0.0)  # fmt: skip
    keys = tl.load(
        k_ptr + n[:, None] * stride_k + d[None, :], mask=n_ok[:, None] & (d < ID)[None, :], other=0.0
    )
    dots = dot(q, tl.trans(keys), tl.zeros([BLOCK_H, BLOCK_N], tl.float32), UPCAST)  # [IH, BLOCK_N]
    w = tl.load(w_ptr + t * stride_wt + h, mask=h < IH, other=0.0).to(tl.float32)
    score = tl.sum(tl.maximum(dots, 0.0) * scale * w[:, None], axis=0) + 0.0  # + 0.0 folds -0.0 into +0.0
    tl.store(score_ptr + t * N + n, score, mask=n_ok)
    if RANK:
        bits = score.to(tl.int32, bitcast=True)
        ordered = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(tl.int64)  # monotone in the score
        key = (ordered << 32) | (4294967295 - n.to(tl.int64))  # ties: the lower index ranks higher
        visible = n < (tl.load(pos_ptr + t) + 1) // rate
        tl.store(key_ptr + t * N + n, tl.where(visible, key, LOWEST_KEY), mask=n_ok)


def scores(
    q: torch.Tensor,
    keys: torch.Tensor,
    head_weights: torch.Tensor,
    positions: torch.Tensor | None = None,
    rate: int = 1,
    all_heads: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """q [T, IH, ID], keys [N, ID], head_weights [T, IH] -> scores [T, N] float32 and, with
    positions [T], ranking keys [T, N] int64 (see the module docstring). ``all_heads``: the
    model's indexer heads when q holds one rank's share of them (the scale is 1/sqrt of it)."""
    t, heads, dim = q.shape
    n = keys.shape[0]
    out = torch.empty(t, n, dtype=torch.float32, device=q.device)
    ranks = torch.empty(t, n, dtype=torch.int64, device=q.device) if positions is not None else None
    if t == 0 or n == 0:
        return out, ranks
    q = q if q.stride(-1) == 1 else q.contiguous()
    keys, head_weights = keys.contiguous(), head_weights.contiguous()
    block_n = 16 if INTERPRETING else 64
    _indexer_kernel[(t, triton.cdiv(n, block_n))](
        q, keys, head_weights, positions if positions is not None else out, out, ranks if ranks is not None else out,
        n, heads, dim, rate, q.stride(0), q.stride(1), keys.stride(0), head_weights.stride(0),
        dim**-0.5 * (all_heads or heads) ** -0.5,
        RANK=positions is not None, BLOCK_H=next_pow2(heads, 16), BLOCK_N=block_n, BLOCK_D=next_pow2(dim, 16),
        UPCAST=upcast(),
    )  # fmt: skip
    return out, ranks


def select(ranks: torch.Tensor, k: int) -> torch.Tensor:
    """ranking keys [T, N] -> [T, N] bool: the k best visible entries of each row."""
    chosen = torch.zeros(ranks.shape, dtype=torch.bool, device=ranks.device)
    if ranks.numel():
        top = torch.topk(ranks, min(k, ranks.shape[1]), dim=1)
        chosen.scatter_(1, top.indices, top.values != LOWEST)
    return chosen


def selection(
    q: torch.Tensor,
    keys: torch.Tensor,
    head_weights: torch.Tensor,
    positions: torch.Tensor,
    k: int,
    rate: int,
) -> torch.Tensor:
    """The indexer's choice [T, N] bool (``models/deepseek_v4/indexer.top_k_visible`` of its scores)."""
    return select(scores(q, keys, head_weights, positions.to(torch.int32), rate)[1], k)
