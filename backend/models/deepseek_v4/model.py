"""DeepSeek-V4's decoder: layers, per-sequence state, forward.

A forward takes a flattened batch (``models/base.py``): embeddings are repeated into
``hc_mult`` streams [T, n, D]; each ``DecoderLayer`` mixes the streams into one input with
its attention hyper-connection (``mhc.py``), applies RMSNorm and attention (``attention.py``),
expands the output back into the streams, and does the same around the MoE (``moe.py``).
Everything per token runs once over the batch; attention loops over the sequences only
where it reads or grows a sequence's own state. The head collapses the last token of each
sequence with its own pre weights, then RMSNorm and the LM head.

``new_state()`` gives one sequence's ``DeepseekV4State``: per layer the latents, the
compressors' open window and previous half-window, the compressed entries and the
indexer's keys, plus the number of tokens seen; standalone they are growing tensors, in
the engine pages of its pool (``cache_streams`` says what a block holds: blocks are whole
compression windows, and carry the compressors' overlap state at their end, so a sequence
resumes at any block boundary of a cached prefix). ``forward`` appends to it, so prefill,
chunked prefill and decode are the same call and a new token never recomputes the prompt.
Positions must continue each state (compressed entries' positions follow from the state).

Weights: one flat dict in release names (``weights.py``: both spellings, FP8/FP4 release
format); each module takes its part by name (``bind``), again after loading. Routed experts
that come quantized stay packed (``packed_weights.PackedExperts``) unless ``keep_quantized=False`` or
``CODEAGENT_KEEP_QUANTIZED=0``: the fused-MoE kernel decodes them in its GEMM tiles, the
torch reference one routed expert at a time, so memory never holds a full-precision copy.
Split across ranks (a ``Group`` of more than one; ``distributed/layout.py``'s rules,
``shares.py``), the dict holds this rank's shares: its query heads, output groups, indexer
heads, shared-expert width, routed experts' width (or, with ``ep``, its E/tp whole
experts) and vocabulary rows, each read from the checkpoint as a slice. The latent, the
compressors, the indexer's keys, mHC, norms and routers are replicated, so every rank
keeps the same state per sequence (``cache_streams`` does not depend on the layout). Per
layer the attention output, the indexer's scores (before the top-k) and the MoE output
are all-reduced; the embedding lookup is all-reduced and the logits all-gathered. With one
process the group is ``SOLO`` and no collective runs.
With ``cpu_experts`` N (one process only), every layer keeps its N least used routed experts
(by ``routed`` routing counts [layers, E], else the highest ids: ``layers/offload.py``'s
``least_used``) in host memory, allocated there from the start (``ffn.host_w13`` /
``ffn.host_w2``, dense or packed as the checkpoint gives them) and computed by the CPU's
kernels beside the device's experts (``moe.py``); the model counts its routing
(``routing``) for the runtime to save.
Limits: no speculative decoding (the MTP layer's weights are skipped).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from codeagent.backend.cache.paged import KVStream, SeqBlocks, growing_rows
from codeagent.backend.distributed.group import SOLO, Group
from codeagent.backend.distributed.vocab import VocabShare, embed, gather
from codeagent.backend.kernels.dispatch import Kernels, choose
from codeagent.backend.layers.linear import head_logits
from codeagent.backend.layers.offload import RoutingCounts, least_used
from codeagent.backend.models.base import CausalLMModule, SeqSlice, Step, last_rows
from codeagent.backend.models.deepseek_v4.attention import Attention, LayerState
from codeagent.backend.models.deepseek_v4.compressor import Compressor, Rope
from codeagent.backend.models.deepseek_v4.config import DeepseekV4Config
from codeagent.backend.models.deepseek_v4.loading import load_into
from codeagent.backend.models.deepseek_v4.mhc import HyperConnection, collapse, expand, head_collapse
from codeagent.backend.models.deepseek_v4.moe import MoE
from codeagent.backend.models.deepseek_v4.norm import rms_norm
from codeagent.backend.models.deepseek_v4.rope import inverse_frequencies, rope_cos_sin
from codeagent.backend.models.deepseek_v4.shares import check_packed, declared_expert_format, local_shapes
from codeagent.backend.models.deepseek_v4.weights import (
    Weights,
    allocate,
    declares_quantized,
    scope,
    split_homes,
)
from codeagent.backend.quant import keep_quantized_default

Rotation = tuple[torch.Tensor, torch.Tensor]  # cos, sin [T, r]


@dataclass(slots=True)
class DeepseekV4State:
    layers: list[LayerState]
    length: int = 0  # tokens consumed so far


class DecoderLayer(nn.Module):
    """mHC around attention, then around the MoE; its weights are the model's ``layers.N.*``."""

    def __init__(
        self,
        c: DeepseekV4Config,
        index: int,
        ropes: dict[str, Rope],
        dtype: torch.dtype,
        group: Group,
        on_host: list[int] | None = None,
        host_kernels: Kernels | None = None,
    ) -> None:
        super().__init__()
        self.eps = c.rms_norm_eps
        self.attn_hc, self.ffn_hc = HyperConnection("hc_attn_", c), HyperConnection("hc_ffn_", c)
        self.attn = Attention(c, index, ropes, dtype, group)
        self.ffn = MoE(c, group, on_host, host_kernels)

    def bind(self, w: Weights) -> None:
        self.attn_norm, self.ffn_norm = w["attn_norm.weight"], w["ffn_norm.weight"]  # [D] float32
        self.attn_hc.bind(w)
        self.ffn_hc.bind(w)
        self.attn.bind(scope(w, "attn."))
        self.ffn.bind(scope(w, "ffn."))

    def forward(
        self,
        streams: torch.Tensor,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        rotation: Rotation,
        states: list[LayerState],
        step: Step,
    ) -> torch.Tensor:
        """streams [T, n, D] -> [T, n, D]; states: this layer's state of each sequence."""
        k = step.kernels
        pre, post, comb = self.attn_hc.forward(streams, k)  # [T, n], [T, n], [T, n, n]
        x = rms_norm(collapse(streams, pre, k), self.attn_norm, self.eps, k)  # [T, D]
        out = self.attn.forward(x, positions, *rotation, states, step.sizes, k)
        streams = expand(out, streams, post, comb, k)
        pre, post, comb = self.ffn_hc.forward(streams, k)
        x = rms_norm(collapse(streams, pre, k), self.ffn_norm, self.eps, k)
        return expand(self.ffn.forward(x, input_ids, k), streams, post, comb, k)


class DeepseekV4ForCausalLM(CausalLMModule):
    config_class = DeepseekV4Config
    splits = True  # takes a ``group``: can run as one rank of a tensor-parallel group
    offloads = True  # takes ``cpu_experts``: routed experts in host memory (``layers/offload.py``)

    def __init__(
        self,
        config: DeepseekV4Config,
        dtype: torch.dtype = torch.float32,
        device: Any = "cpu",
        keep_quantized: bool | None = None,
        kernels: Kernels | None = None,
        group: Group = SOLO,
        cpu_experts: int = 0,
        routed: torch.Tensor | None = None,
    ) -> None:
        """``cpu_experts``: that many routed experts of every layer live in host memory, the
        least used by ``routed`` [layers, E] routing counts (else the highest ids)."""
        super().__init__(config, device, kernels)
        self.dtype, self.device = dtype, torch.device(device)
        self.group, self.layout = group, group.layout
        # quantized routed experts stay packed (default: CODEAGENT_KEEP_QUANTIZED, on unless 0)
        self.keep_quantized = keep_quantized_default() if keep_quantized is None else keep_quantized
        self.shapes = local_shapes(config, self.layout)  # this rank's shares (all in one process)
        check_packed(config, self.layout, declared_expert_format(config))
        if cpu_experts and not self.layout.single:
            raise ValueError("experts in host memory run with one process; drop --tp/--ep")
        layers, experts = config.num_hidden_layers, config.n_routed_experts
        homes = {
            i: least_used(None if routed is None else routed[i], experts, cpu_experts)
            for i in range(layers)
            if cpu_experts
        }
        self.shapes = split_homes(self.shapes, homes)
        self.on_host = {f"layers.{i}.ffn.": on_host for i, on_host in homes.items()}  # for loading
        self.vocab = VocabShare.of(group, config.vocab_size)
        packed = self.keep_quantized and declares_quantized(config)
        self.w: Weights = allocate(self.shapes, dtype, self.device, packed)
        self.ropes = {
            kind: (inverse_frequencies(spec).to(self.device), spec.attention_factor)
            for kind, spec in (("main", config.rope_main), ("compress", config.rope_compress))
        }
        host_kernels = choose(torch.device("cpu")) if cpu_experts else None
        self.layers = nn.ModuleList(
            DecoderLayer(config, i, self.ropes, dtype, group, homes.get(i), host_kernels)
            for i in range(layers)
        )
        self.routing: RoutingCounts | None = None  # counted where experts live in host memory
        if cpu_experts:
            self.routing = RoutingCounts(layers, experts, self.device, routed)
            for index, layer in enumerate(self.layers):
                layer.ffn.routing = (self.routing, index)
        self._bind()

    @property
    def block_multiple(self) -> int:
        """Blocks must hold whole compression windows, so no block boundary splits one."""
        return math.lcm(1, *(layer.attn.rate for layer in self.layers if layer.attn.rate))

    @staticmethod
    def _compressors(layer: DecoderLayer) -> list[tuple[str, Compressor, str]]:
        """(stream prefix, compressor, field of ``LayerState``) of each compressor of a layer."""
        attn, out = layer.attn, []
        if attn.compressor is not None:
            out.append(("", attn.compressor, "compressor"))
        if attn.indexer is not None:
            out.append(("idx.", attn.indexer.compressor, "indexer"))
        return out

    def cache_streams(self, block_size: int) -> list[KVStream]:
        """Per layer: every token's latent; CSA/HCA: the compressed entries; CSA: the indexer's keys
        and, once per block, both compressors' overlap state at the block's end."""
        c, dtype, out = self.config, self.dtype, []
        for i, layer in enumerate(self.layers):
            out.append(KVStream(f"{i}.lat", 1, (c.head_dim,), dtype))
            for prefix, comp, _ in self._compressors(layer):
                out.append(KVStream(f"{i}.{prefix}ent", comp.rate, (comp.out_dim,), dtype))
                if comp.overlap:
                    out.append(
                        KVStream(f"{i}.{prefix}ovl", block_size, (2, comp.rate, comp.out_dim), torch.float32)
                    )
        return out

    def new_state(self, paged: SeqBlocks | None = None, cached_tokens: int = 0) -> DeepseekV4State:
        """A sequence's state: standalone (growing tensors), or over its engine blocks, continuing
        ``cached_tokens`` (a block boundary) already there: latents and entries are read in place
        and the compressors' overlaps reloaded from the last block."""
        rows = paged.rows if paged is not None else growing_rows
        layers = []
        for i, layer in enumerate(self.layers):
            state = LayerState(latents=rows(f"{i}.lat", cached_tokens))
            for prefix, comp, field in self._compressors(layer):
                compressor = getattr(state, field)
                compressor.entries = rows(f"{i}.{prefix}ent", cached_tokens // comp.rate)
                if comp.overlap and paged is not None:
                    block_size = paged.pool.block_size
                    compressor.block_overlaps = rows(f"{i}.{prefix}ovl", cached_tokens // block_size)
                    compressor.block_size = block_size
                    compressor.resume(cached_tokens)
            layers.append(state)
        return DeepseekV4State(layers, cached_tokens)

    def load_weights(self, weights: Iterable[tuple[str, Any]]) -> None:
        """(key, tensor or ``StoredTensor``) pairs; this rank reads only its pieces (``loading.py``)."""
        load_into(self, weights)
        self._bind()  # loading replaced the experts' placeholders

    def _bind(self) -> None:
        w = self.w
        self.embed, self.norm, self.head = w["embed.weight"], w["norm.weight"], w["head.weight"]
        self.head_hc = (w["hc_head_fn"], w["hc_head_base"], w["hc_head_scale"])
        for i, layer in enumerate(self.layers):
            layer.bind(scope(w, f"layers.{i}."))

    def logits(
        self, input_ids: torch.Tensor, positions: torch.Tensor, seqs: list[SeqSlice], step: Step
    ) -> torch.Tensor:
        """Each sequence's state reads its own rows (no layer attends through block tables)."""
        c, k = self.config, self.kernels
        _check_batch(input_ids, positions, seqs)
        streams = embed(self.embed, input_ids, self.vocab, self.group)[:, None, :].repeat(1, c.hc_mult, 1)
        rotations = {kind: rope_cos_sin(positions, *rope) for kind, rope in self.ropes.items()}
        for i, layer in enumerate(self.layers):
            states = [s.state.layers[i] for s in seqs]
            streams = layer.forward(
                streams, input_ids, positions, rotations[layer.attn.rope_kind], states, step
            )
        for s in seqs:
            s.state.length += s.num_tokens
        h = head_collapse(
            streams[last_rows(step, streams.device)], *self.head_hc, c.hc_eps, c.rms_norm_eps, k
        )  # [N, D]
        logits = head_logits(rms_norm(h, self.norm, c.rms_norm_eps, k), self.head, k).float()
        return gather(logits, self.vocab, self.group)  # [N, vocab]


def _check_batch(input_ids: torch.Tensor, positions: torch.Tensor, seqs: list[SeqSlice]) -> None:
    total = sum(s.num_tokens for s in seqs)
    if input_ids.shape != (total,) or positions.shape != (total,) or min(s.num_tokens for s in seqs) < 1:
        raise ValueError(f"input_ids and positions need shape ({total},) and every slice a token")
    expected = torch.cat([torch.arange(s.num_tokens) + s.state.length for s in seqs]).to(positions.device)
    if not torch.equal(positions, expected):
        raise ValueError("positions must continue each sequence's state (0, 1, ... after its earlier tokens)")
