"""DeepSeek-V4's hyper-connection weights from their mixing logits, Sinkhorn included (Triton).

After the one matmul of ``models/deepseek_v4/mhc.mixing_logits`` ([T, (2 + n) * n] float32),
``hc_weights`` needs pre = sigmoid(a * s0 + b) + eps, post = 2 sigmoid(a * s1 + b) and
comb = Sinkhorn(softmax_row(a * s2 + b) + eps): columns normalised once, then (iters - 1)
rounds of rows then columns, each dividing by (sum + eps). In torch that is ~4 + 2 *
iters tiny launches per sublayer; here one, a program doing BLOCK_T tokens with their
n x n matrices held as [BLOCK_T, n, n] tiles. n must be a power of two (4 in the
released models).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from codeagent.backend.kernels.common import INTERPRETING


@triton.jit
def _hc_kernel(
    logits_ptr, scale_ptr, base_ptr, pre_ptr, post_ptr, comb_ptr,
    T, eps, ITERS: tl.constexpr, N: tl.constexpr, BLOCK_T: tl.constexpr,
):  # fmt: skip
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    t_ok = t < T
    width: tl.constexpr = (2 + N) * N
    i = tl.arange(0, N)
    row = t[:, None] * width
    s0, s1, s2 = tl.load(scale_ptr), tl.load(scale_ptr + 1), tl.load(scale_ptr + 2)
    a_pre = tl.load(logits_ptr + row + i[None, :], mask=t_ok[:, None], other=0.0)
    a_post = tl.load(logits_ptr + row + N + i[None, :], mask=t_ok[:, None], other=0.0)
    pre = tl.sigmoid(a_pre * s0 + tl.load(base_ptr + i)[None, :]) + eps
    post = 2.0 * tl.sigmoid(a_post * s1 + tl.load(base_ptr + N + i)[None, :])
    tl.store(pre_ptr + t[:, None] * N + i[None, :], pre, mask=t_ok[:, None])
    tl.store(post_ptr + t[:, None] * N + i[None, :], post, mask=t_ok[:, None])
    jk = i[:, None] * N + i[None, :]  # [N, N] offsets of comb[j, k]
    offs = t[:, None, None] * (N * N) + jk[None, :, :]
    a = tl.load(
        logits_ptr + t[:, None, None] * width + 2 * N + jk[None, :, :], mask=t_ok[:, None, None], other=0.0
    )
    c = a * s2 + tl.load(base_ptr + 2 * N + jk)[None, :, :]
    c = tl.exp(c - tl.max(c, axis=2)[:, :, None])
    c = c / tl.sum(c, axis=2)[:, :, None] + eps
    c = c / (tl.sum(c, axis=1)[:, None, :] + eps)
    for _ in tl.static_range(ITERS - 1):
        c = c / (tl.sum(c, axis=2)[:, :, None] + eps)
        c = c / (tl.sum(c, axis=1)[:, None, :] + eps)
    tl.store(comb_ptr + offs, c, mask=t_ok[:, None, None])


def hc_weights(
    logits: torch.Tensor, scale: torch.Tensor, base: torch.Tensor, n: int, iters: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits [T, (2 + n) * n] float32 -> pre [T, n], post [T, n], comb [T, n, n] (float32)."""
    t = logits.shape[0]
    pre = torch.empty(t, n, dtype=torch.float32, device=logits.device)
    post = torch.empty_like(pre)
    comb = torch.empty(t, n, n, dtype=torch.float32, device=logits.device)
    if t:
        block_t = min(triton.next_power_of_2(t), 64 if INTERPRETING else 16)
        _hc_kernel[(triton.cdiv(t, block_t),)](
            logits.float().contiguous(), scale.float().contiguous(), base.float().contiguous(), pre, post, comb,
            t, eps, ITERS=iters, N=n, BLOCK_T=block_t,
        )  # fmt: skip
    return pre, post, comb
