"""DeepSeek-V4's MoE: sqrt-softplus routing (or a fixed hash table), clamped SwiGLU experts.

Scores s = sqrt(softplus(x W_g^T)) [T, E] in float32. Learned layers pick the top-k of
s + bias (the aux-loss-free balancing bias only chooses, it does not weight); the first
``hash_moe`` layers take ``tid2eid[token id]`` instead. The chosen scores, normalised to
sum 1 and times ``routed_scaling_factor``, weight the experts. An expert is
down(silu(min(gate, limit)) * clamp(up, -limit, limit)), with the activation and its
routing weight applied in float32 before the down projection, and the routed sum kept in
float32 as in DeepSeek's inference code; one shared expert of the same form is always
added. Routed experts are stored fused per layer: ``w13`` [E, 2I, D] (gate rows, then up
rows) and ``w2`` [E, D, I], either dense in the model dtype or packed as the release ships
them (``packed_weights.PackedExperts``, FP4 or FP8 with UE8M0 scales).

Split across ranks, each rank runs every token through its share of each expert's width,
or (``ep``) through the experts it holds whole, and through its share of the shared
expert's width; the router (and hash table) is replicated, and the routed and shared
partial sums, kept in float32, are all-reduced once per layer before the cast.

With routed experts in two homes (``--cpu-experts``: ``layers/offload.py``'s
``ExpertHomes``), the layer's dict holds the device's experts as ``w13``/``w2`` and the host's
as ``host_w13``/``host_w2`` (dense or packed, as the checkpoint gives them); each (token,
expert) pair goes to its expert's home, the host's computed by ``routed_experts`` on a
worker thread with the host's kernels (the native packed MoE kernel for packed experts on
CPU) while the device computes its own, the two float32 partial sums added before the
shared expert. Hash-routed and learned layers alike; the routing is counted
(``RoutingCounts``) so the next load keeps the least used experts in host memory.

Kernels: Triton's fused MoE (decoding packed experts in its tiles) on a GPU; on CPU, packed
experts in decode-sized batches run the native packed kernel (``kernels.packed.moe_packed``,
the whole layer in one call, never a decoded copy) with ``weight_first``: the routing weight
multiplies the activation in float32 before the down projection and the routed sum stays in
float32, as here, and a bfloat16 model's activations are rounded where this reference rounds
them (gate, up, the weighted activation, each expert's output), so the two differ only by
float32 summation order. Dense (bf16) experts stay on the reference on CPU: the native bf16
MoE kernel (``native.moe``) has no SwiGLU clamp. The shared expert's products go through
``layers.linear.linear`` (the native bf16 kernel for decode rows, the packed kernels for a
packed weight).

Limit: otherwise experts run one after another over the tokens routed to each (a reference
loop). The loop decodes a packed expert just before it runs it (natively where the packed
kernels run), only the experts the step routes to, so no more than two experts' dequantized
weights exist at once; it pays that decoding at every step (the price of not keeping a
full-precision copy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from codeagent.backend.distributed.group import Group
from codeagent.backend.kernels.dispatch import REFERENCE, Kernels
from codeagent.backend.layers.linear import Weight, linear
from codeagent.backend.layers.offload import ExpertHomes, RoutingCounts, subset_forward
from codeagent.backend.models.deepseek_v4.config import DeepseekV4Config
from codeagent.backend.models.deepseek_v4.shares import held_experts
from codeagent.backend.models.deepseek_v4.weights import Weights
from codeagent.backend.packed_weights import PackedExperts

Experts = torch.Tensor | PackedExperts


def route(
    x: torch.Tensor,
    gate: torch.Tensor,
    bias: torch.Tensor | None,
    hashed: torch.Tensor | None,
    k: int,
    scale: float,
    kernels: Kernels = REFERENCE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [T, D]; gate [E, D]; bias [E] or hashed (tid2eid rows of the tokens) [T, k] -> weights, ids [T, k]."""
    if kernels.triton is not None:
        return kernels.triton.sqrt_softplus_route(F.linear(x.float(), gate.float()), bias, hashed, k, scale)
    scores = F.softplus(linear(x.float(), gate.float(), kernels)).sqrt()  # [T, E]
    ids = hashed if hashed is not None else torch.topk(scores + bias.float(), k, dim=-1).indices
    weights = scores.gather(1, ids)
    return weights / (weights.sum(dim=-1, keepdim=True) + 1e-20) * scale, ids


def clamped_swiglu(gate: torch.Tensor, up: torch.Tensor, limit: float) -> torch.Tensor:
    return F.silu(gate.float().clamp(max=limit)) * up.float().clamp(min=-limit, max=limit)


def expert(
    x: torch.Tensor,
    w1: Weight,
    w3: Weight,
    w2: Weight,
    weight: torch.Tensor | None,
    limit: float,
    kernels: Kernels = REFERENCE,
) -> torch.Tensor:
    """x [t, D]; gate w1, up w3 [I, D]; down w2 [D, I]; weight [t, 1] or None -> [t, D] float32.
    With ``kernels``, each product through ``layers.linear.linear`` (the native bf16 kernel for a
    decode row, the packed kernels for a packed weight); without, ``F.linear``."""
    hidden = clamped_swiglu(linear(x, w1, kernels), linear(x, w3, kernels), limit)
    if weight is not None:
        hidden = hidden * weight
    return linear(hidden.to(x.dtype), w2, kernels).float()


def routed_experts(
    x: torch.Tensor,
    w13: Experts,
    w2: Experts,
    weights: torch.Tensor,
    ids: torch.Tensor,
    limit: float,
    kernels: Kernels = REFERENCE,
) -> torch.Tensor:
    """x [T, D]; w13 [E, 2I, D]; w2 [E, D, I] (dense or packed); weights, ids [T, k] -> [T, D] float32."""
    if kernels.triton is not None:
        return kernels.triton.fused_moe(
            x, w13, w2, weights, ids, clamped=True, limit=limit, out_dtype=torch.float32
        )
    if _native_fits(x, w13, w2, ids, kernels):
        return kernels.packed.moe_packed(  # type: ignore[union-attr]
            x, w13, w2, weights, ids, limit, torch.float32, weight_first=True
        )
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    inter = w2.shape[-1]
    for e in torch.unique(ids).tolist():
        token, slot = torch.where(ids == e)
        gate_up, down = _expert_weights(w13, e, x.dtype, kernels), _expert_weights(w2, e, x.dtype, kernels)
        w1, w3 = gate_up[:inter], gate_up[inter:]
        out.index_add_(0, token, expert(x[token], w1, w3, down, weights[token, slot, None], limit))
    return out


def _native_fits(x: torch.Tensor, w13: Experts, w2: Experts, ids: torch.Tensor, kernels: Kernels) -> bool:
    """Whether the native packed MoE kernel takes this batch (both projections packed, CPU,
    decode-sized)."""
    return (
        kernels.packed is not None
        and isinstance(w13, PackedExperts)
        and isinstance(w2, PackedExperts)
        and kernels.packed.fits_moe_packed(x, w13, w2, ids)
    )


def _expert_weights(w: Experts, e: int, dtype: torch.dtype, kernels: Kernels) -> torch.Tensor:
    """Expert e's [N, K] weight: a view of dense storage, or decoded from packed storage now
    (natively where the packed kernels run: the same values, faster)."""
    if isinstance(w, torch.Tensor):
        return w[e]
    if kernels.packed is not None and kernels.packed.fits_dequantize(w, dtype):
        return kernels.packed.dequantize_expert(w, e, dtype)
    return w.expert(e, dtype)


class MoE(nn.Module):
    """One layer's MoE; its weights are the layer's ``ffn.*`` (keys relative to ``ffn.``).
    ``on_host``: the routed experts it keeps in host memory (sorted ids), computed with
    ``host_kernels``."""

    def __init__(
        self,
        c: DeepseekV4Config,
        group: Group,
        on_host: list[int] | None = None,
        host_kernels: Kernels | None = None,
    ) -> None:
        super().__init__()
        self.top_k, self.scale, self.limit = c.num_experts_per_tok, c.routed_scaling_factor, c.swiglu_limit
        self.group, self.ep = group, group.layout.ep
        self.first_expert = held_experts(c, group.layout).start
        if on_host and (self.ep or not group.layout.single):
            raise ValueError("experts in host memory run with one process; drop --tp/--ep")
        self.on_host, self.host_kernels = on_host or [], host_kernels
        self.homes: ExpertHomes | None = None  # some experts in host memory (``on_host``)
        self.routing: tuple[RoutingCounts, int] | None = None  # where to count this layer's routing

    def bind(self, w: Weights) -> None:
        self.gate = w["gate.weight"]  # [E, D] float32
        self.bias = w.get("gate.bias")  # [E] learned layers
        self.tid2eid = w.get("gate.tid2eid")  # [vocab, k] hash-routed layers
        self.w13, self.w2 = w["w13"], w["w2"]  # dense or packed: the device's experts
        self.shared = tuple(w[f"shared_experts.{n}.weight"] for n in ("w1", "w3", "w2"))
        if self.on_host:
            assert self.host_kernels is not None
            self.homes = ExpertHomes.over(
                (self.w13, self.w2),
                (w["host_w13"], w["host_w2"]),
                self.on_host,
                self.host_kernels,
                where=self.gate.device,
                experts=self._experts,
                out_dtype=torch.float32,
            )

    def forward(self, x: torch.Tensor, input_ids: torch.Tensor, kernels: Kernels) -> torch.Tensor:
        """x [T, D], input_ids [T] -> [T, D]."""
        hashed = self.tid2eid[input_ids] if self.tid2eid is not None else None  # [T, k]
        weights, ids = route(x, self.gate, self.bias, hashed, self.top_k, self.scale, kernels)
        if self.homes is not None:
            if self.routing is not None:
                self.routing[0].add(self.routing[1], ids)
            out = self.homes.forward(x, weights, ids, kernels)  # [T, D] float32
        elif self.ep:  # this rank's (token, expert) pairs, each run as a one-expert token
            local = ids - self.first_expert
            mine = (local >= 0) & (local < self.w13.shape[0])
            out = subset_forward(
                x, self.w13, self.w2, weights, local, mine, kernels, self._experts, torch.float32
            )
        else:
            out = routed_experts(x, self.w13, self.w2, weights, ids, self.limit, kernels)  # [T, D] float32
        out += expert(x, *self.shared, None, self.limit, kernels)
        return self.group.all_reduce(out).to(x.dtype)

    def _experts(
        self,
        x: torch.Tensor,
        w13: Experts,
        w2: Experts,
        weights: torch.Tensor,
        ids: torch.Tensor,
        kernels: Kernels,
    ) -> torch.Tensor:
        """``routed_experts`` at this layer's SwiGLU limit: what a home computes its pairs with."""
        return routed_experts(x, w13, w2, weights, ids, self.limit, kernels)
