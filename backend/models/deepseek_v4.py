"""DeepSeek-V4 (``DeepseekV4ForCausalLM``): mHC residual streams, hybrid compressed attention,
sqrt-softplus MoE with hash-routed first layers. Token-exact against transformers' full
forward in float32 (wherever no exactly tied indexer score straddles the top-k cut; see
``deepseek_v4_attention``), and one-token decoding gives the same logits as prefill.

A forward takes a flattened batch (``models/base.py``): embeddings are repeated into
``hc_mult`` streams [T, n, D]; each layer mixes the streams into one input with its
attention hyper-connection (``deepseek_v4_mhc``), applies RMSNorm and attention
(``deepseek_v4_attention``, per sequence, since each keeps its own window and
compressed entries), expands the output back into the streams, and does the same around
the MoE (``deepseek_v4_moe``, batched over all tokens). The head collapses the last
token of each sequence with its own pre weights, then RMSNorm and the LM head.

``new_state()`` gives one sequence's ``DeepseekV4State``: per layer the last W-1 latents,
the compressors' open window and previous half-window, the compressed entries and the
indexer's keys, plus the number of tokens seen; ``forward`` appends to it, so prefill,
chunked prefill and decode are the same call and a new token never recomputes the
prompt. Positions must continue each state (the rotary positions of compressed entries
follow from the state itself).

Weights: ``deepseek_v4_weights`` (names, both spellings, FP8/FP4 release format). Routed
experts that come quantized stay packed (``quant.PackedExperts``: FP4 codes or FP8 values
with UE8M0 scales) unless ``keep_quantized=False`` or ``CODEAGENT_KEEP_QUANTIZED=0``: the
fused-MoE kernel decodes them in its GEMM tiles, the torch reference one routed expert at
a time, so memory never holds a full-precision copy of them. The hot operations
(``attend``, ``pool_windows``, ``indexer_scores``, ``sinkhorn``, ``routed_experts``) are
small functions that kernels can replace. Limits: plain torch,
no paged cache (states are growing tensors), and no speculative decoding (MTP ignored).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from codeagent.backend.cache.paged import SeqBlocks, Stream, growing_rows
from codeagent.backend.cache.tables import BlockTables
from codeagent.backend.kernels.dispatch import Kernels, choose
from codeagent.backend.layers.linear import head_logits
from codeagent.backend.models.base import SeqSlice, split
from codeagent.backend.models.deepseek_v4_attention import (
    LayerState,
    layer_attention,
    output_projection,
    project,
    sequence_attention,
)
from codeagent.backend.models.deepseek_v4_config import SLIDING, DeepseekV4Config
from codeagent.backend.models.deepseek_v4_mhc import collapse, expand, hc_weights, head_collapse
from codeagent.backend.models.deepseek_v4_moe import moe
from codeagent.backend.models.deepseek_v4_rope import inverse_frequencies, rms_norm, rope_cos_sin
from codeagent.backend.models.deepseek_v4_weights import (
    allocate,
    declares_quantized,
    load_into,
    weight_shapes,
)
from codeagent.backend.quant import PackedExperts, keep_quantized_default

Rotation = tuple[torch.Tensor, torch.Tensor]  # cos, sin [T, r]


@dataclass(slots=True)
class DeepseekV4State:
    layers: list[LayerState]
    length: int = 0  # tokens consumed so far


class DeepseekV4ForCausalLM(nn.Module):
    config_class = DeepseekV4Config

    def __init__(
        self,
        config: DeepseekV4Config,
        dtype: torch.dtype = torch.float32,
        device: Any = "cpu",
        keep_quantized: bool | None = None,
        kernels: Kernels | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.kernels = kernels if kernels is not None else choose(device)
        self.dtype, self.device = dtype, torch.device(device)
        # quantized routed experts stay packed (default: CODEAGENT_KEEP_QUANTIZED, on unless 0)
        self.keep_quantized = keep_quantized_default() if keep_quantized is None else keep_quantized
        self.shapes = weight_shapes(config)
        packed = self.keep_quantized and declares_quantized(config)
        self.w: dict[str, torch.Tensor | PackedExperts] = allocate(self.shapes, dtype, self.device, packed)
        self.ropes = {
            kind: (inverse_frequencies(spec).to(self.device), spec.attention_factor)
            for kind, spec in (("main", config.rope_main), ("compress", config.rope_compress))
        }
        self.attention = [layer_attention(config, i, self.ropes) for i in range(config.num_hidden_layers)]
        self.layer_w = self._layer_views()

    @property
    def block_multiple(self) -> int:
        """Blocks must hold whole compression windows, so no block boundary splits one."""
        return math.lcm(1, *(spec.rate for spec in self.attention if spec.rate))

    def cache_streams(self, block_size: int) -> list[Stream]:
        """Per layer: every token's latent; CSA/HCA: the compressed entries; CSA: the indexer's keys
        and, once per block, both compressors' overlap state at the block's end."""
        c, dtype, out = self.config, self.dtype, []
        for i, spec in enumerate(self.attention):
            out.append(Stream(f"{i}.lat", 1, (c.head_dim,), dtype))
            for prefix, comp in (("", spec.main), ("idx.", spec.indexer)):
                if comp is None:
                    continue
                out.append(Stream(f"{i}.{prefix}ent", comp.rate, (comp.out_dim,), dtype))
                if comp.overlap:
                    out.append(
                        Stream(f"{i}.{prefix}ovl", block_size, (2, comp.rate, comp.out_dim), torch.float32)
                    )
        return out

    def new_state(self, paged: SeqBlocks | None = None, cached_tokens: int = 0) -> DeepseekV4State:
        """A sequence's state: standalone (growing tensors), or over its engine blocks, continuing
        ``cached_tokens`` (a block boundary) already there: latents and entries are read in place
        and the compressors' overlaps reloaded from the last block."""
        rows = paged.rows if paged is not None else growing_rows
        layers = []
        for i, spec in enumerate(self.attention):
            layer = LayerState(latents=rows(f"{i}.lat", cached_tokens))
            for prefix, comp, state in (
                ("", spec.main, layer.compressor),
                ("idx.", spec.indexer, layer.indexer),
            ):
                if comp is None:
                    continue
                state.entries = rows(f"{i}.{prefix}ent", cached_tokens // comp.rate)
                if comp.overlap and paged is not None:
                    block_size = paged.pool.block_size
                    state.block_overlaps = rows(f"{i}.{prefix}ovl", cached_tokens // block_size)
                    state.block_size = block_size
                    state.resume(cached_tokens)
            layers.append(layer)
        return DeepseekV4State(layers, cached_tokens)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        load_into(self, weights)
        self.layer_w = self._layer_views()  # loading replaced the experts' placeholders

    def _layer_views(self) -> list[dict[str, Any]]:
        """Per layer, its weights keyed without "layers.N." (the same storage as ``w``)."""
        return [
            {k[len(p) :]: v for k, v in self.w.items() if k.startswith(p)}
            for p in (f"layers.{i}." for i in range(self.config.num_hidden_layers))
        ]

    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        seqs: list[SeqSlice],
        tables: BlockTables | None = None,
    ) -> torch.Tensor:
        """Each sequence's state reads its own rows (no layer attends through block tables)."""
        c, w, k = self.config, self.w, self.kernels
        _check_batch(input_ids, positions, seqs)
        streams = w["embed.weight"][input_ids][:, None, :].repeat(1, c.hc_mult, 1)  # [T, n, D]
        rotations = {kind: rope_cos_sin(positions, *rope) for kind, rope in self.ropes.items()}
        for i in range(c.num_hidden_layers):
            streams = self._layer(i, streams, input_ids, positions, seqs, rotations)
        for s in seqs:
            s.state.length += s.num_tokens
        last = torch.cumsum(torch.tensor([s.num_tokens for s in seqs], device=streams.device), 0) - 1
        h = head_collapse(
            streams[last], w["hc_head_fn"], w["hc_head_base"], w["hc_head_scale"], c.hc_eps, c.rms_norm_eps, k
        )  # [N, D]
        return head_logits(rms_norm(h, w["norm.weight"], c.rms_norm_eps, k), w["head.weight"], k).float()

    def _layer(
        self,
        i: int,
        streams: torch.Tensor,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        seqs: list[SeqSlice],
        rotations: dict[str, Rotation],
    ) -> torch.Tensor:
        c, w, eps, k = self.config, self.layer_w[i], self.config.rms_norm_eps, self.kernels
        iters, hc_eps = c.hc_sinkhorn_iters, c.hc_eps
        pre, post, comb = hc_weights(
            streams, w["hc_attn_fn"], w["hc_attn_base"], w["hc_attn_scale"], iters, hc_eps, eps, k
        )
        x = rms_norm(collapse(streams, pre), w["attn_norm.weight"], eps, k)  # [T, D]
        streams = expand(self._attention(i, x, positions, seqs, rotations), streams, post, comb)
        pre, post, comb = hc_weights(
            streams, w["hc_ffn_fn"], w["hc_ffn_base"], w["hc_ffn_scale"], iters, hc_eps, eps, k
        )
        x = rms_norm(collapse(streams, pre), w["ffn_norm.weight"], eps, k)
        out = moe(x, input_ids, w, c.num_experts_per_tok, c.routed_scaling_factor, c.swiglu_limit, k)
        return expand(out, streams, post, comb)

    def _attention(
        self,
        i: int,
        x: torch.Tensor,
        positions: torch.Tensor,
        seqs: list[SeqSlice],
        rotations: dict[str, Rotation],
    ) -> torch.Tensor:
        spec, w, c = self.attention[i], self.layer_w[i], self.config
        cos, sin = rotations["main" if spec.kind == SLIDING else "compress"]
        k = self.kernels
        q_residual, q, kv = project(x, w, c, cos, sin, k)
        pieces = zip(seqs, *(split(t, seqs) for t in (x, q_residual, q, kv, positions)), strict=True)
        out = torch.cat([sequence_attention(spec, s.state.layers[i], w, c, *rest, k) for s, *rest in pieces])
        return output_projection(out, w, c, cos, sin, k)  # [T, D]


def _check_batch(input_ids: torch.Tensor, positions: torch.Tensor, seqs: list[SeqSlice]) -> None:
    total = sum(s.num_tokens for s in seqs)
    if input_ids.shape != (total,) or positions.shape != (total,) or min(s.num_tokens for s in seqs) < 1:
        raise ValueError(f"input_ids and positions need shape ({total},) and every slice a token")
    expected = torch.cat([torch.arange(s.num_tokens) + s.state.length for s in seqs]).to(positions.device)
    if not torch.equal(positions, expected):
        raise ValueError("positions must continue each sequence's state (0, 1, ... after its earlier tokens)")
