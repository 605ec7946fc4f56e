"""The KV cache a token costs on one rank, derived from the model itself.

The model is built on the ``meta`` device (shapes and dtypes, no memory) and asked for
its ``cache_streams`` at the engine's block size (``CacheConfig().block_tokens``: 32
tokens for Qwen3, 128 for DeepSeek-V4, whose blocks hold whole compression windows), so
the bytes are the pool's own: ``KVPool.bytes_per_block(streams, block) / block`` per token,
and a context costs whole blocks.

What the streams are: Qwen3, per layer, every token's keys and values [KV heads, head
dim]. DeepSeek-V4, per layer, every token's latent [head dim] (all of them, not only the
sliding window: a prefix must resume at any block boundary); on compressed layers one
entry every ``rate`` tokens; on CSA layers the indexer's keys every 4 tokens and, once a
block, both compressors' overlap state (float32 [2, rate, dim]). All in the model dtype
but the overlaps. Qwen3-Next / Qwen3.5-MoE: keys and values of the full-attention layers
only (one layer in four), and, where the model saves its DeltaNet states in the pool for
prefix caching, each DeltaNet layer's conv and float32 recurrent state once a block, in one
block of ``state_every`` (``KVStream.every``: counted as that share of every block). A
running sequence's own live DeltaNet states are not in the pool: ``plan.workspace_for``
counts them.

Per rank (``distributed/layout.py``): Qwen3's key/value heads split when there are at
least as many as ranks, else each rank keeps the one head its query heads read
(``Layout.kv_heads``); every DeepSeek-V4 stream is replicated (the latent is shared by
all heads, the compressors and indexer keys are replicated).

Limits: the streams come from a model built for one rank, with the layout's rule applied
to their rows here; once models build per-rank streams, this is where to ask them instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from codeagent.backend.cache.allocator import CacheConfig
from codeagent.backend.cache.paged import KVPool, KVStream
from codeagent.backend.distributed.layout import Layout
from codeagent.backend.models.registry import UnsupportedArchitecture, model_class
from codeagent.backend.planning import PlanError
from codeagent.backend.planning.families import DEEPSEEK_V4, QWEN3_NEXT, family

KINDS = {
    "k": "keys",
    "v": "values",
    "lat": "latents",
    "ent": "compressed entries",
    "idx.ent": "indexer keys",
    "ovl": "compressor overlap",
    "idx.ovl": "indexer overlap",
    "conv": "DeltaNet conv states",
    "state": "DeltaNet recurrent states",
}


@dataclass(frozen=True, slots=True)
class KVCost:
    block_tokens: int  # tokens per block of the pool
    block_bytes: int  # one block's rows on this rank
    kinds: dict[str, float]  # bytes per token by stream kind (KINDS' words)
    rule: str  # how the rows are divided among ranks, in words

    @property
    def per_token(self) -> float:
        return self.block_bytes / self.block_tokens

    def bytes_for(self, tokens: int) -> int:
        """What ``tokens`` tokens of one sequence take: whole blocks."""
        return math.ceil(tokens / self.block_tokens) * self.block_bytes

    def tokens_in(self, budget: int) -> int:
        """The most tokens ``budget`` bytes hold, in whole blocks."""
        return max(0, budget) // self.block_bytes * self.block_tokens


def meta_model(raw: dict[str, Any], dtype: torch.dtype) -> Any:
    """The model of ``config.json`` built on the meta device: its config, streams and shapes, no memory."""
    architecture = (raw.get("architectures") or ["(none)"])[0]
    try:
        cls = model_class(architecture)
    except UnsupportedArchitecture as err:
        raise PlanError(str(err)) from None
    try:
        config = cls.config_class.from_dict(raw)
    except (KeyError, TypeError, ValueError) as err:
        raise PlanError(f"config.json is not a valid {architecture} config: {err}") from None
    return cls(config, dtype=dtype, device="meta")


def kv_cost(model: Any, layout: Layout) -> KVCost:
    """The KV cache per token of rank 0 of ``layout`` (``LayoutError`` where heads do not divide)."""
    block = CacheConfig().block_tokens(model.block_multiple)
    streams = [_on_rank(s, model.config, layout) for s in model.cache_streams(block)]
    kinds: dict[str, float] = {}
    for stream in streams:
        kind = KINDS.get(stream.name.split(".", 1)[1], stream.name)
        share = stream.rows_per_block(block) * stream.row_bytes() / stream.every  # held by 1 block in every
        kinds[kind] = kinds.get(kind, 0.0) + share / block
    return KVCost(block, KVPool.bytes_per_block(streams, block), kinds, _rule(model.config, layout))


def _rule(config: Any, layout: Layout) -> str:
    if layout.tp == 1:
        return "all on one rank"
    if family(config) == DEEPSEEK_V4:
        return "the same on every rank (latents, compressors and indexer keys are replicated)"
    kv = config.num_key_value_heads
    if kv >= layout.tp:
        return f"{kv // layout.tp} of {kv} key/value heads on each rank"
    return f"1 of {kv} key/value heads on each rank, each head on {layout.tp // kv} ranks"


def _on_rank(stream: KVStream, config: Any, layout: Layout) -> KVStream:
    if family(config) == DEEPSEEK_V4:
        return stream  # latent, entries, indexer keys, overlaps: replicated
    if family(config) == QWEN3_NEXT:
        return stream  # one process (plan.Planned.candidate offers no other layout)
    heads = layout.kv_heads(config.num_key_value_heads, config.num_attention_heads)
    return replace(stream, row_shape=(heads.stop - heads.start, *stream.row_shape[1:]))
