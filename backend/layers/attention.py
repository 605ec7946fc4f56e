"""Causal grouped-query attention over a per-sequence KV cache (torch reference).

``KVCache`` holds one sequence's keys and values for one layer as two row streams
[S, KVH, D]: pages of the engine's KV pool, or private growing tensors without an engine. ``attend`` appends the new rows and computes attention of the new queries over
everything cached, with the causal mask offset by what was cached before. Softmax runs in
float32. This is the reference path the paged-cache Triton kernels will be tested
against; it loops over sequences, so batching gives no speed-up here.
"""

from __future__ import annotations

import torch

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

    Query heads are grouped under their KV head instead of repeating K and V.
    """
    n, heads, dim = q.shape
    s, kv_heads, _ = k.shape
    group = heads // kv_heads
    q = q.view(n, kv_heads, group, dim).permute(1, 2, 0, 3)  # [KVH, G, N, D]
    scores = torch.matmul(q, k.permute(1, 2, 0)[:, None]) * scale  # [KVH, G, N, S]
    if n > 1:
        query_pos = torch.arange(s - n, s, device=q.device)[:, None]
        key_pos = torch.arange(s, device=q.device)[None, :]
        scores = scores.masked_fill(key_pos > query_pos, float("-inf"))
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    out = torch.matmul(probs, v.permute(1, 0, 2)[:, None])  # [KVH, G, N, D]
    return out.permute(2, 0, 1, 3).reshape(n, heads, dim)
