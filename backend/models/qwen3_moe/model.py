"""Qwen3-MoE (``Qwen3MoeForCausalLM``; Qwen3-Coder-30B-A3B and its kin).

Per layer: RMSNorm -> GQA attention with per-head RMSNorm on q and k before rotary ->
residual -> RMSNorm -> sparse MoE (softmax top-k, optional renormalisation) or, for
layers listed in ``mlp_only_layers`` / off the ``decoder_sparse_step``, a dense SiLU MLP ->
residual (the add fused with the next norm where a kernel does both). Weights are kept fused
for kernels: ``qkv`` [(H + 2·KVH)·D, hidden], experts
``w13`` [E, 2I, hidden] and ``w2`` [E, hidden, I]; ``weights.py`` maps the per-matrix and
per-expert names of released checkpoints (``model.layers.N.mlp.experts.E.gate_proj.weight``)
to their slices, so loading never holds a second copy of a layer.

Split across ranks (a ``Group`` of more than one, ``distributed/layout.py``'s rules), every
size above is this rank's share: H/tp query heads and their KV heads, the MLP and expert
widths (or, with ``ep``, E/tp whole experts), V/tp rows of the embedding and LM head; the
attention output, MLP and MoE outputs and the embedding lookup are all-reduced, the logits
all-gathered. With one process the group is ``SOLO`` and no collective runs. The hot
path calls submodules' ``forward`` directly: no hooks are used, and ``nn.Module.__call__``
costs a few microseconds a call, a share of a CPU decode step (``docs/bench/cpu-choices.md``).
The kernels (``kernels``), chosen when the model is built, reach layers through a ``Step``.
A decode step of up to eight sequences on the CPU runs as a ``decode_program.DecodeProgram``
instead: the same native calls bound once to fixed buffers, without the Python around them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from codeagent.backend.cache.paged import KVStream, SeqBlocks, growing_rows
from codeagent.backend.distributed.group import SOLO, Group
from codeagent.backend.distributed.vocab import VocabShare, embed, gather
from codeagent.backend.kernels.dispatch import Kernels, choose
from codeagent.backend.layers.attention import KVCache, attend
from codeagent.backend.layers.linear import Linear, empty_param, head_logits
from codeagent.backend.layers.moe import experts_forward, silu_and_mul, softmax_topk
from codeagent.backend.layers.norm import RMSNorm, add_rms_norm, rms_norm
from codeagent.backend.layers.offload import ExpertHomes, RoutingCounts, least_used, subset_forward
from codeagent.backend.layers.rotary import cos_sin, inverse_frequencies, norm_then_rotary
from codeagent.backend.models.base import CausalLMModule, SeqSlice, Step, last_rows
from codeagent.backend.models.qwen3_moe import weights
from codeagent.backend.models.qwen3_moe.config import Qwen3MoeConfig
from codeagent.backend.models.qwen3_moe.decode_program import DecodeProgram, program_for


class Attention(nn.Module):
    """This rank's query heads and the key/value heads they read (all of them in one process)."""

    def __init__(self, c: Qwen3MoeConfig, dtype: torch.dtype, device: Any, group: Group) -> None:
        super().__init__()
        layout, self.group = group.layout, group
        self.kv_slice = layout.kv_heads(c.num_key_value_heads, c.num_attention_heads)
        self.heads = c.num_attention_heads // layout.tp
        self.kv_heads, self.head_dim = self.kv_slice.stop - self.kv_slice.start, c.head_dim
        self.qkv = Linear(c.hidden_size, (self.heads + 2 * self.kv_heads) * self.head_dim, dtype, device)
        self.o = Linear(self.heads * self.head_dim, c.hidden_size, dtype, device)
        self.q_norm = RMSNorm(self.head_dim, c.rms_norm_eps).to(device=device, dtype=dtype)
        self.k_norm = RMSNorm(self.head_dim, c.rms_norm_eps).to(device=device, dtype=dtype)
        self.scale = self.head_dim**-0.5

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        caches: list[KVCache],
        step: Step,
    ) -> torch.Tensor:
        t, kernels = x.shape[0], step.kernels
        q, k, v = self.qkv.forward(x, kernels).split(
            [self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim], dim=-1
        )
        q = norm_then_rotary(q, self.q_norm.weight, self.q_norm.eps, cos, sin, kernels)  # [T, H, D]
        k = norm_then_rotary(k, self.k_norm.weight, self.k_norm.eps, cos, sin, kernels)  # [T, KVH, D]
        v = v.view(t, self.kv_heads, self.head_dim)
        out = attend(q, k, v, caches, step.sizes, self.scale, step.tables, kernels)  # [T, H, D]
        return self.group.all_reduce(self.o.forward(out.reshape(t, -1), kernels))


class SparseMoe(nn.Module):
    """The router (replicated) and this rank's experts: every expert at a share of its width, or
    (``ep``) a share of the experts whole; either way the output is a partial sum to all-reduce."""

    def __init__(
        self,
        c: Qwen3MoeConfig,
        dtype: torch.dtype,
        device: Any,
        group: Group,
        on_host: list[int] | None = None,
        host_kernels: Kernels | None = None,
    ) -> None:
        super().__init__()
        layout, self.group = group.layout, group
        self.top_k, self.normalize, self.ep = c.num_experts_per_tok, c.norm_topk_prob, layout.ep
        experts = layout.split(c.num_experts, "experts") if layout.ep else slice(0, c.num_experts)
        self.first_expert = experts.start
        width = c.moe_intermediate_size
        self.width = width if layout.ep else width // layout.tp
        if not layout.ep:
            layout.split(width, "the experts' intermediate size")
        count = experts.stop - experts.start
        self.gate = Linear(c.hidden_size, c.num_experts, dtype, device)
        self.w13 = empty_param(count, 2 * self.width, c.hidden_size, dtype=dtype, device=device)
        self.w2 = empty_param(count, c.hidden_size, self.width, dtype=dtype, device=device)
        self.homes: ExpertHomes | None = None  # some experts in host memory (``on_host``)
        self.routing: tuple[RoutingCounts, int] | None = None  # where to count this layer's routing
        if on_host:
            if layout.ep:
                raise ValueError("experts in host memory and --ep do not combine")
            self.w13 = empty_param(
                count - len(on_host), 2 * self.width, c.hidden_size, dtype=dtype, device=device
            )
            self.w2 = empty_param(count - len(on_host), c.hidden_size, self.width, dtype=dtype, device=device)
            self.host_w13 = empty_param(
                len(on_host), 2 * self.width, c.hidden_size, dtype=dtype, device="cpu"
            )
            self.host_w2 = empty_param(len(on_host), c.hidden_size, self.width, dtype=dtype, device="cpu")
            assert host_kernels is not None
            self.homes = ExpertHomes.over(
                (self.w13, self.w2), (self.host_w13, self.host_w2), on_host, host_kernels
            )

    def forward(self, x: torch.Tensor, kernels: Kernels) -> torch.Tensor:
        logits = self.gate.forward(x, kernels)  # [T, E]
        weights, ids = softmax_topk(logits, self.top_k, self.normalize, kernels)  # [T, k]
        if self.homes is not None:
            if self.routing is not None:
                self.routing[0].add(self.routing[1], ids)
            return self.group.all_reduce(self.homes.forward(x, weights, ids, kernels))
        if not self.ep:
            return self.group.all_reduce(experts_forward(x, self.w13, self.w2, weights, ids, kernels))
        local = ids - self.first_expert  # this rank's (token, expert) pairs
        mine = (local >= 0) & (local < self.w13.shape[0])
        return self.group.all_reduce(subset_forward(x, self.w13, self.w2, weights, local, mine, kernels))


class DenseMlp(nn.Module):
    """A SiLU-gated MLP at this rank's share of the intermediate width."""

    def __init__(self, c: Qwen3MoeConfig, dtype: torch.dtype, device: Any, group: Group) -> None:
        super().__init__()
        self.group = group
        part = group.layout.split(c.intermediate_size, "the MLP's intermediate size")
        width = part.stop - part.start
        self.w13 = Linear(c.hidden_size, 2 * width, dtype, device)
        self.w2 = Linear(width, c.hidden_size, dtype, device)

    def forward(self, x: torch.Tensor, kernels: Kernels) -> torch.Tensor:
        return self.group.all_reduce(self.w2.forward(silu_and_mul(self.w13.forward(x, kernels)), kernels))


class DecoderLayer(nn.Module):
    def __init__(
        self,
        c: Qwen3MoeConfig,
        index: int,
        dtype: torch.dtype,
        device: Any,
        group: Group,
        on_host: list[int] | None = None,
        host_kernels: Kernels | None = None,
    ) -> None:
        super().__init__()
        self.input_norm = RMSNorm(c.hidden_size, c.rms_norm_eps).to(device=device, dtype=dtype)
        self.attn = Attention(c, dtype, device, group)
        self.post_norm = RMSNorm(c.hidden_size, c.rms_norm_eps).to(device=device, dtype=dtype)
        self.mlp: nn.Module = (
            SparseMoe(c, dtype, device, group, on_host, host_kernels)
            if c.is_sparse(index)
            else DenseMlp(c, dtype, device, group)
        )

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        caches: list[KVCache],
        step: Step,
    ) -> torch.Tensor:
        kernels = step.kernels
        out = self.attn.forward(self.input_norm.forward(x, kernels), cos, sin, caches, step)
        h, x = add_rms_norm(out, x, self.post_norm.weight, self.post_norm.eps, kernels)  # [T, hidden] each
        return x + self.mlp.forward(h, kernels)


class Qwen3MoeForCausalLM(CausalLMModule):
    config_class = Qwen3MoeConfig
    splits = True  # takes a ``group``: can run as one rank of a tensor-parallel group
    offloads = True  # takes ``cpu_experts``: routed experts in host memory (``layers/offload.py``)

    def __init__(
        self,
        config: Qwen3MoeConfig,
        dtype: torch.dtype = torch.float32,
        device: Any = "cpu",
        kernels: Kernels | None = None,
        group: Group = SOLO,
        cpu_experts: int = 0,
        routed: torch.Tensor | None = None,
    ) -> None:
        """``cpu_experts``: that many routed experts of every sparse layer live in host memory,
        the least used by ``routed`` [layers, E] routing counts (else the highest ids)."""
        super().__init__(config, device, kernels)
        self.group = group
        self.vocab = VocabShare.of(group, config.vocab_size)  # this rank's rows (all in one process)
        rows = self.vocab.rows(group)
        self.embed = empty_param(rows, config.hidden_size, dtype=dtype, device=device)
        host_kernels = choose(torch.device("cpu")) if cpu_experts else None
        self.layers = nn.ModuleList(
            DecoderLayer(
                config,
                i,
                dtype,
                device,
                group,
                least_used(None if routed is None else routed[i], config.num_experts, cpu_experts)
                if cpu_experts
                else None,
                host_kernels,
            )
            for i in range(config.num_hidden_layers)
        )
        self.routing: RoutingCounts | None = None  # counted where experts live in host memory
        if cpu_experts:
            self.routing = RoutingCounts(config.num_hidden_layers, config.num_experts, device, routed)
            for index, layer in enumerate(self.layers):
                if isinstance(layer.mlp, SparseMoe):
                    layer.mlp.routing = (self.routing, index)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps).to(device=device, dtype=dtype)
        self.lm_head = Linear(config.hidden_size, rows, dtype, device)
        self.inv_freq = inverse_frequencies(config.head_dim, config.rope_theta)
        self.use_decode_program = True  # CPU decode steps as bound programs (``decode_program``)
        self.decode_programs: dict[int, DecodeProgram] = {}  # by batch size
        self.program_refusals: dict[int, str] = {}  # by batch size: why this model cannot run one

    block_multiple = 1  # any block size works: every row is one token's

    def cache_streams(self, block_size: int) -> list[KVStream]:
        """What a block of tokens leaves in the KV pool: per layer, keys and values [KVH, D]."""
        attn = self.layers[0].attn
        shape, dtype = (attn.kv_heads, attn.head_dim), self.embed.dtype
        return [KVStream(f"{i}.{kv}", 1, shape, dtype) for i in range(len(self.layers)) for kv in "kv"]

    def new_state(self, paged: SeqBlocks | None = None, cached_tokens: int = 0) -> list[KVCache]:
        """A sequence's caches: standalone (growing tensors), or over its engine blocks, continuing
        ``cached_tokens`` already there."""
        rows = paged.rows if paged is not None else growing_rows
        return [
            KVCache(rows(f"{i}.k", cached_tokens), rows(f"{i}.v", cached_tokens))
            for i in range(len(self.layers))
        ]

    def logits(
        self, input_ids: torch.Tensor, positions: torch.Tensor, seqs: list[SeqSlice], step: Step
    ) -> torch.Tensor:
        states = [s.state for s in seqs]
        program = program_for(self, states, step.sizes, step.tables)
        if program is not None:  # a decode step on the CPU: the same calls, bound once
            return program.run(input_ids, positions, states, step.tables)  # type: ignore[arg-type]
        x = embed(self.embed, input_ids, self.vocab, self.group)  # [T, hidden]
        cos, sin = cos_sin(positions, self.inv_freq)  # [T, D]
        for index, layer in enumerate(self.layers):
            caches = [s.state[index] for s in seqs]
            x = layer.forward(x, cos, sin, caches, step)  # type: ignore[operator]
        h = rms_norm(
            x[last_rows(step, x.device)], self.norm.weight, self.norm.eps, self.kernels
        )  # [N, hidden]
        return gather(head_logits(h, self.lm_head.weight, self.kernels).float(), self.vocab, self.group)

    def load_weights(self, stream: Iterable[tuple[str, Any]]) -> None:
        """Copy each checkpoint tensor's share into its (slice of a) parameter (``weights.py``)."""
        weights.load(self, stream)
