"""Causal grouped-query attention over a per-sequence KV cache (torch reference).

``KVCache`` holds one sequence's keys and values for one layer as two row streams
[S, KVH, D]: pages of the engine's KV pool, or private growing tensors without an engine. ``attend`` appends the new rows and computes attention of the new queries over
everything cached, with the causal mask offset by what was cached before. It loops over
sequences (each reads its own rows gathered from the pool); the paged-attention Triton
kernels of a later issue read the pool in place and are tested against this.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from codeagent.backend.cache.paged import GrowingRows, Rows


class KVCache:
    """One layer's keys and values for one sequence: two row streams (paged or growing)."""

    def __init__(self, k: Rows | None = None, v: Rows | None = None) -> None:
        self.k: Rows = k if k is not None else GrowingRows()
        self.v: Rows = v if v is not None else GrowingRows()

    def __len__(self) -> int:
        return len(self.k)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the new rows [n, KVH, D]; return every row so far."""
        self.k.append(k)
        self.v.append(v)
        return self.k.read(), self.v.read()


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """q [N, H, D] (the last N positions), k, v [S, KVH, D] with S >= N -> [N, H, D].

    PyTorch's fused scaled-dot-product attention with grouped heads (no repeated K/V), causal
    with the mask offset by the S - N positions cached before; on CPU its flash kernel keeps
    memory linear in S where a materialised [H, N, S] score matrix would not.
    """
    n, s = q.shape[0], k.shape[0]
    mask = None
    if 1 < n < s:
        mask = torch.arange(s, device=q.device)[None, :] <= torch.arange(s - n, s, device=q.device)[:, None]
    out = F.scaled_dot_product_attention(
        q.transpose(0, 1)[None],
        k.transpose(0, 1)[None],
        v.transpose(0, 1)[None],
        attn_mask=mask,
        is_causal=n == s and n > 1,
        scale=scale,
        enable_gqa=True,
    )
    return out[0].transpose(0, 1)
