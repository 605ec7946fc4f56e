"""DeepSeek-V4's compressor pooling: a gate-softmax-weighted sum over a window's slots (Triton).

``pool_windows(kv, gate)`` with kv, gate [n, slots, d] float32 -> [n, d]: for each entry and
channel, softmax over the slots of the gate (slot biases already added; -inf marks a
slot with no token, the first CSA window's missing predecessor), then the weighted sum
of the values, as ``models/deepseek_v4/compressor.pool_windows``. One program per (entry,
BLOCK_D channels), all slots (<= 256: 2 x 128 for the released rates) in one tile.
The RMSNorm and rotary that follow have their own kernels.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from codeagent.backend.kernels.common import next_pow2


@triton.jit
def _pool_kernel(kv_ptr, gate_ptr, out_ptr, S, D, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    e, pid_d = tl.program_id(0), tl.program_id(1)
    s = tl.arange(0, BLOCK_S)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask = (s < S)[:, None] & (d < D)[None, :]
    offs = e * S * D + s[:, None] * D + d[None, :]
    gate = tl.load(gate_ptr + offs, mask=mask, other=float("-inf"))
    top = tl.max(gate, axis=0)
    weight = tl.exp(gate - tl.where(top == float("-inf"), 0.0, top)[None, :])
    total = tl.sum(weight, axis=0)
    weight = weight / tl.where(total == 0.0, 1.0, total)[None, :]
    kv = tl.load(kv_ptr + offs, mask=mask, other=0.0)
    tl.store(out_ptr + e * D + d, tl.sum(tl.where(mask, kv * weight, 0.0), axis=0), mask=d < D)


def pool_windows(kv: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """kv, gate [n, slots, d] float32 -> [n, d] float32."""
    n, slots, d = kv.shape
    out = torch.empty(n, d, dtype=torch.float32, device=kv.device)
    if n:
        block_d = min(next_pow2(d), max(16, 4096 // next_pow2(slots)))
        _pool_kernel[(n, triton.cdiv(d, block_d))](
            kv.float().contiguous(),
            gate.float().contiguous(),
            out,
            slots,
            d,
            BLOCK_S=next_pow2(slots),
            BLOCK_D=block_d,
        )
    return out
