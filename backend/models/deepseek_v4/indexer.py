"""DeepSeek-V4's Lightning indexer: which compressed entries a CSA layer's query attends.

A CSA layer has a second, narrower compressor (dim ``index_head_dim``, ``compressor.py``)
whose entries are the indexer's keys: the query at position t scores entry s as
``sum_h w_h(x_t) * ReLU(q_h(t) . K_s)`` (scaled by 1/sqrt(dim) and 1/sqrt(heads)) and keeps
the ``index_topk`` best among the entries already closed at t (entry i pools tokens
[i*rate, (i+1)*rate) and is closed for the query at p iff i < (p + 1) // rate).

Ties in that ranking are real: the ReLU zeroes every head's term whenever its dot product
is negative, so entries often score exactly 0. ``torch.topk`` picks among tied values in
an order that depends on the row's length, so two correct evaluations of the same
position can choose different entries; see ``attention.py`` for what that does to
transformers. We rank with a stable sort, so ties always go to the lowest entry index
and a position's choice never depends on what else is in the batch or what follows it.

The queries and head weights are per token (``project``, every sequence at once); the
selection is per sequence, over its own entries (``select``). Split across ranks, a rank
holds IH/tp heads (their ``wq_b`` rows and ``weights_proj`` rows) and the keys whole; its
``partial_scores`` are its heads' terms of the sum (scaled by the whole 1/sqrt(IH)), which
the attention all-reduces before ``choose`` takes the top-k of the whole row.

Shapes: T new tokens, IH indexer heads, ID index_head_dim, N entries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codeagent.backend.kernels.dispatch import Kernels
from codeagent.backend.layers.linear import linear, plain_or_packed
from codeagent.backend.models.deepseek_v4.compressor import Compressor, Rope
from codeagent.backend.models.deepseek_v4.config import DeepseekV4Config
from codeagent.backend.models.deepseek_v4.rope import apply_interleaved_rope
from codeagent.backend.models.deepseek_v4.weights import Weights, scope


class Indexer(nn.Module):
    """A CSA layer's indexer; its weights are the layer's ``attn.indexer.*``."""

    def __init__(self, c: DeepseekV4Config, rate: int, rope: Rope, dtype: torch.dtype, tp: int = 1) -> None:
        super().__init__()
        self.all_heads, self.topk, self.rate = c.index_n_heads, c.index_topk, rate
        self.heads = c.index_n_heads // tp  # this rank's
        self.compressor = Compressor(rate, c.index_head_dim, True, rope, c.rms_norm_eps, dtype)

    def bind(self, w: Weights) -> None:
        self.wq_b = w["wq_b.weight"]  # [IH * ID, q_lora]
        self.weights_proj = w["weights_proj.weight"]  # [IH, hidden]
        self.compressor.bind(scope(w, "compressor."))

    def project(
        self,
        x: torch.Tensor,
        q_residual: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kernels: Kernels,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T, hidden], q_residual [T, q_lora], cos/sin [T, r] -> queries [T, IH, ID], head weights [T, IH]."""
        q = plain_or_packed(q_residual, self.wq_b, kernels).view(x.shape[0], self.heads, -1)
        q = apply_interleaved_rope(q, cos[:, None], sin[:, None], kernels)
        return q, linear(x, self.weights_proj, kernels)

    def select(
        self,
        q: torch.Tensor,
        head_weights: torch.Tensor,
        positions: torch.Tensor,
        keys: torch.Tensor,
        kernels: Kernels,
    ) -> torch.Tensor:
        """One sequence: q [t, IH, ID], head_weights [t, IH], positions [t], keys [N, ID] -> [t, N] bool."""
        if kernels.triton is not None:
            return kernels.triton.indexer_selection(q, keys, head_weights, positions, self.topk, self.rate)
        return self.choose(indexer_scores(q, keys, head_weights), positions)

    def partial_scores(
        self, q: torch.Tensor, head_weights: torch.Tensor, keys: torch.Tensor, kernels: Kernels
    ) -> torch.Tensor:
        """This rank's heads' share of one sequence's scores [t, N] float32 (to sum over the ranks)."""
        if kernels.triton is not None:
            return kernels.triton.indexer_scores(q, keys, head_weights, self.all_heads)
        return indexer_scores(q, keys, head_weights, self.all_heads)

    def choose(self, score: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Whole scores [t, N] of one sequence -> [t, N] bool, its top-k visible entries."""
        return top_k_visible(score, visible_entries(positions, score.shape[1], self.rate), self.topk)


def visible_entries(positions: torch.Tensor, count: int, rate: int) -> torch.Tensor:
    """[T, N] True where entry i is closed for the query at position p: i < (p + 1) // rate."""
    return torch.arange(count, device=positions.device)[None, :] < ((positions + 1) // rate)[:, None]


def indexer_scores(
    q: torch.Tensor, keys: torch.Tensor, head_weights: torch.Tensor, heads: int | None = None
) -> torch.Tensor:
    """q [T, IH, ID], keys [N, ID], head_weights [T, IH] -> [T, N] float32; ``heads``: the model's
    indexer heads, when q holds a share of them."""
    scores = F.relu(torch.einsum("thd,nd->thn", q.float(), keys.float())) * q.shape[-1] ** -0.5
    return (scores * head_weights.float()[:, :, None] * (heads or q.shape[1]) ** -0.5).sum(dim=1)


def top_k_visible(score: torch.Tensor, visible: torch.Tensor, k: int) -> torch.Tensor:
    """[T, N] True for the k best visible entries per row; ties go to the lowest index."""
    score = score.masked_fill(~visible, float("-inf"))
    order = torch.sort(score, dim=-1, descending=True, stable=True).indices[:, :k]
    chosen = torch.zeros_like(visible)
    chosen.scatter_(1, order, True)
    return chosen & visible
