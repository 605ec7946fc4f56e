"""Manifold-constrained hyper-connections (mHC): DeepSeek-V4's residual of n streams.

The residual is n streams X [T, n, D] (the embedding repeated n times at the start).
Around each sublayer, the flattened streams, RMS-normalised without a weight, go
through one linear map ``fn`` [(2 + n) * n, n * D] to give, with learned scales and
biases: pre = sigmoid(.) + eps [n] (how to collapse the streams into the sublayer's
input), post = 2 sigmoid(.) [n] (how much of the output each stream takes) and comb
[n, n], a row softmax made doubly stochastic by Sinkhorn normalisation (columns once,
then rows and columns alternately), which mixes the old streams:
X'_k = post_k * F(u) + sum_j comb[j, k] X_j with u = sum_j pre_j X_j.
The head collapses the streams with pre weights only (its own ``fn`` [n, n * D]).

All of it runs in float32 and is cast back once, as DeepSeek's inference code does;
transformers mixes in the activation dtype (identical in float32). ``HyperConnection`` holds
one sublayer's ``fn``, ``base`` and ``scale``; the functions are the references the mHC
kernels (Triton: ``kernels/mhc.py``; CPU: ``kernels/native_v4.c``, taken where given ``kernels``)
are tested against.
"""

from __future__ import annotations

import torch
from torch import nn

from codeagent.backend.kernels.dispatch import REFERENCE, Kernels
from codeagent.backend.layers.linear import linear
from codeagent.backend.models.deepseek_v4.config import DeepseekV4Config
from codeagent.backend.models.deepseek_v4.norm import unweighted_rms_norm
from codeagent.backend.models.deepseek_v4.weights import Weights


def mixing_logits(
    streams: torch.Tensor, fn: torch.Tensor, eps: float, kernels: Kernels = REFERENCE
) -> torch.Tensor:
    """streams [T, n, D] -> [T, rows of fn] float32."""
    return linear(unweighted_rms_norm(streams.flatten(1).float(), eps, kernels), fn, kernels)


def sinkhorn(logits: torch.Tensor, iters: int, eps: float) -> torch.Tensor:
    """[..., n, n] -> near doubly-stochastic: row softmax, then column / row normalisations."""
    comb = torch.softmax(logits, dim=-1) + eps
    comb = comb / (comb.sum(dim=-2, keepdim=True) + eps)
    for _ in range(iters - 1):
        comb = comb / (comb.sum(dim=-1, keepdim=True) + eps)
        comb = comb / (comb.sum(dim=-2, keepdim=True) + eps)
    return comb


def hc_weights(
    streams: torch.Tensor,
    fn: torch.Tensor,
    base: torch.Tensor,
    scale: torch.Tensor,
    iters: int,
    hc_eps: float,
    norm_eps: float,
    kernels: Kernels = REFERENCE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """streams [T, n, D] -> pre [T, n], post [T, n], comb [T, n, n] (float32)."""
    n = streams.shape[1]
    logits = mixing_logits(streams, fn, norm_eps, kernels)
    if kernels.triton is not None and n & (n - 1) == 0:
        return kernels.triton.hc_weights(logits, scale, base, n, iters, hc_eps)
    if kernels.v4 is not None and kernels.v4.fits(streams):
        return kernels.v4.hc_weights(logits, scale, base, n, iters, hc_eps)
    pre, post, comb = logits.split([n, n, n * n], dim=-1)
    pre_b, post_b, comb_b = base.split([n, n, n * n])
    pre = torch.sigmoid(pre * scale[0] + pre_b) + hc_eps
    post = 2 * torch.sigmoid(post * scale[1] + post_b)
    comb = sinkhorn(comb.unflatten(-1, (n, n)) * scale[2] + comb_b.view(n, n), iters, hc_eps)
    return pre, post, comb


def collapse(streams: torch.Tensor, pre: torch.Tensor, kernels: Kernels = REFERENCE) -> torch.Tensor:
    """streams [T, n, D], pre [T, n] -> [T, D] in the streams' dtype."""
    if kernels.v4 is not None and kernels.v4.fits(streams):
        return kernels.v4.collapse(streams, pre)
    return (pre[..., None] * streams.float()).sum(dim=1).to(streams.dtype)


def expand(
    out: torch.Tensor,
    streams: torch.Tensor,
    post: torch.Tensor,
    comb: torch.Tensor,
    kernels: Kernels = REFERENCE,
) -> torch.Tensor:
    """Sublayer output out [T, D] back into streams [T, n, D]: post_k * out + sum_j comb[j, k] X_j."""
    if kernels.v4 is not None and kernels.v4.fits(streams):
        return kernels.v4.expand(out, streams, post, comb)
    mixed = torch.einsum("tjk,tjd->tkd", comb, streams.float())
    return (post[..., None] * out.float()[:, None, :] + mixed).to(streams.dtype)


def head_collapse(
    streams: torch.Tensor,
    fn: torch.Tensor,
    base: torch.Tensor,
    scale: torch.Tensor,
    hc_eps: float,
    norm_eps: float,
    kernels: Kernels = REFERENCE,
) -> torch.Tensor:
    """The final collapse of streams [N, n, D] -> [N, D], pre weights only."""
    pre = torch.sigmoid(mixing_logits(streams, fn, norm_eps, kernels) * scale + base) + hc_eps
    return collapse(streams, pre, kernels)


class HyperConnection(nn.Module):
    """One sublayer's mHC (attention's or the MoE's): its weights are ``{prefix}fn``
    [(2 + n) * n, n * D], ``{prefix}base`` [(2 + n) * n] and ``{prefix}scale`` [3] of the layer."""

    def __init__(self, prefix: str, c: DeepseekV4Config) -> None:
        super().__init__()
        self.prefix, self.iters = prefix, c.hc_sinkhorn_iters
        self.hc_eps, self.norm_eps = c.hc_eps, c.rms_norm_eps

    def bind(self, w: Weights) -> None:
        self.fn, self.base, self.scale = (w[self.prefix + name] for name in ("fn", "base", "scale"))

    def forward(
        self, streams: torch.Tensor, kernels: Kernels
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """streams [T, n, D] -> pre [T, n], post [T, n], comb [T, n, n] (float32)."""
        return hc_weights(
            streams, self.fn, self.base, self.scale, self.iters, self.hc_eps, self.norm_eps, kernels
        )
