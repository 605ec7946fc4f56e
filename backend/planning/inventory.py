"""What one rank of a parallel layout holds: each checkpoint tensor's share under the layout
rules of ``distributed/layout.py``, in the format the loader keeps it in memory.

Shares (the layout's own arithmetic: ``Layout.split``, ``kv_heads``, ``vocab``, so a size
that does not divide raises its ``LayoutError``):

- Qwen3-MoE: ``q_proj`` and ``o_proj`` by attention heads; ``k_proj``/``v_proj`` by key/value
  heads, or one head a rank when there are fewer heads than ranks; dense MLPs by their
  width; routed experts by their width, or whole experts with ``ep``; embedding and LM
  head by vocabulary rows; norms and routers replicated.
- DeepSeek-V4: ``wq_b`` and the attention sinks by heads; ``wo_a``/``wo_b`` by output
  groups; the indexer's ``wq_b`` and ``weights_proj`` by indexer heads; the shared expert by
  its width; routed experts as for Qwen3; embedding and head by vocabulary rows;
  ``wq_a``, the latent's ``wkv``, the compressors, norms, routers, hash tables and mHC
  replicated; the MTP layers are not loaded (they count in the checkpoint, not on a rank).
  Quantized routed experts split by width only in whole scale groups (32 inputs for FP4,
  128x128 blocks for FP8): a layout that would cut one raises the loader's ``LayoutError``
  (``models/deepseek_v4/shares.check_packed``).
- Qwen3-Next / Qwen3.5-MoE: the runtime runs it in one process (no ``--tp`` / ``--ep``), so the
  planner offers one device only (``plan.Planned.candidate``) and every tensor is whole on
  it; the roles (Qwen3-MoE's, the shared expert's, the DeltaNet layers' replicated) name
  what a split would do. The MTP head (``mtp.*``) and a release's vision tower are not loaded.

Reported for rank 0, the largest (the last rank's vocabulary share may be shorter).

Formats in memory, as the loader makes them: every weight in the model dtype, except
DeepSeek-V4's and Qwen3-Next's routed experts that come quantized, which stay packed
(``fp4 packed`` / ``fp8 packed``: codes plus one scale per row and group of 32 or 128
inputs) unless ``CODEAGENT_KEEP_QUANTIZED=0``; Qwen3-Next's FP8 projections that its loader
keeps packed (``models/qwen3_next/packed.py``: ``o_proj``, ``out_proj``, ``down_proj``, the
LM head, and ``q``/``k``/``v`` or gate/up where their rows are whole 128-row blocks), as
stored (``fp8 packed``: codes and block scales); and DeepSeek-V4's numerically sensitive
tensors, which stay float32 (``weights.storage_dtype``: norms, mHC, sinks, routers,
compressors) or int64 (hash tables). Other FP8/FP4 weights are dequantized at load
(``bf16 (from fp8)``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from codeagent.backend.distributed.layout import Layout
from codeagent.backend.models.deepseek_v4.shares import check_packed
from codeagent.backend.models.deepseek_v4.weights import release_name, storage_dtype
from codeagent.backend.planning.checkpoint import Stored
from codeagent.backend.planning.families import DEEPSEEK_V4, QWEN3_NEXT, family
from codeagent.backend.quant import FP8_BLOCK

REPLICATED, VOCAB, HEADS, KV_HEADS, GROUPS, INDEX_HEADS, DENSE, SHARED, EXPERTS, SKIPPED = (
    "replicated",
    "vocabulary",
    "heads",
    "key/value heads",
    "output groups",
    "indexer heads",
    "dense width",
    "shared expert width",
    "routed experts",
    "not loaded",
)
QWEN3_ROLES = (
    (re.compile(r"^(embed_tokens|lm_head)\.weight$"), VOCAB),
    (re.compile(r"self_attn\.[qo]_proj\."), HEADS),
    (re.compile(r"self_attn\.[kv]_proj\."), KV_HEADS),
    (re.compile(r"mlp\.experts\."), EXPERTS),
    (re.compile(r"mlp\.(gate|up|down)_proj\."), DENSE),
)
V4_ROLES = (
    (re.compile(r"^(embed|head)\.weight$"), VOCAB),
    (re.compile(r"indexer\.(wq_b|weights_proj)\."), INDEX_HEADS),
    (re.compile(r"attn\.(wq_b\.|attn_sink$)"), HEADS),
    (re.compile(r"attn\.wo_[ab]\."), GROUPS),
    (re.compile(r"ffn\.experts\."), EXPERTS),
    (re.compile(r"ffn\.shared_experts\."), SHARED),
)
NEXT_ROLES = (*QWEN3_ROLES, (re.compile(r"mlp\.shared_expert\."), SHARED))
NEXT_SKIPPED = re.compile(r"^(mtp\.|model\.visual\.|visual\.)")
NEXT_PREFIX = re.compile(r"^model\.(language_model\.)?")
NEXT_WHOLE = re.compile(r"^lm_head\.weight$|(self_attn\.o_proj|linear_attn\.out_proj|down_proj)\.weight$")
NEXT_QKV = re.compile(r"self_attn\.[qkv]_proj\.weight$")
NEXT_GATE_UP = re.compile(r"mlp\.(shared_expert\.)?(gate|up)_proj\.weight$")
DTYPE_NAMES = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16", torch.int64: "i64"}


@dataclass(slots=True)
class RankWeights:
    stored: dict[str, int] = field(default_factory=dict)  # checkpoint bytes this rank reads, by format
    resident: dict[str, int] = field(default_factory=dict)  # bytes it holds in memory, by format

    @property
    def total(self) -> int:
        return sum(self.resident.values())

    def add(self, stored: tuple[str, int], resident: tuple[str, int]) -> None:
        for into, (fmt, count) in ((self.stored, stored), (self.resident, resident)):
            if count:
                into[fmt] = into.get(fmt, 0) + count


def role(name: str, architecture: str) -> str:
    """Which rule of the layout splits the checkpoint tensor ``name`` of a model of ``architecture``."""
    if architecture == DEEPSEEK_V4:
        release = release_name(name)
        if release is None:
            return SKIPPED
        return next((r for pattern, r in V4_ROLES if pattern.search(release)), REPLICATED)
    if architecture == QWEN3_NEXT:
        if NEXT_SKIPPED.match(name):
            return SKIPPED
        bare = NEXT_PREFIX.sub("", name)
        return next((r for pattern, r in NEXT_ROLES if pattern.search(bare)), REPLICATED)
    bare = name.removeprefix("model.")
    return next((r for pattern, r in QWEN3_ROLES if pattern.search(bare)), REPLICATED)


def share(kind: str, c: Any, layout: Layout) -> float:
    """Rank 0's share of a tensor split by rule ``kind`` (``LayoutError`` where sizes do not divide)."""
    if kind == SKIPPED:
        return 0.0
    if kind == REPLICATED:
        return 1.0
    if kind == VOCAB:
        part = layout.vocab(c.vocab_size)
        return (part.stop - part.start) / c.vocab_size
    if kind == KV_HEADS:
        part = layout.kv_heads(c.num_key_value_heads, c.num_attention_heads)
        return (part.stop - part.start) / c.num_key_value_heads
    if kind == EXPERTS and layout.ep:
        experts = getattr(c, "n_routed_experts", None) or c.num_experts
        return _fraction(layout, experts, "routed experts")
    sizes = {
        HEADS: (c.num_attention_heads, "attention heads"),
        GROUPS: (getattr(c, "o_groups", 1), "output groups"),
        INDEX_HEADS: (getattr(c, "index_n_heads", 1), "indexer heads"),
        DENSE: (getattr(c, "intermediate_size", 1), "dense MLP width"),
        SHARED: (
            getattr(c, "shared_expert_intermediate_size", 0) or c.moe_intermediate_size,
            "shared expert width",
        ),
        EXPERTS: (c.moe_intermediate_size, "routed experts' width"),
    }
    return _fraction(layout, *sizes[kind])


def _fraction(layout: Layout, size: int, what: str) -> float:
    part = layout.split(size, what)
    return (part.stop - part.start) / size


def resident(
    entry: Stored, architecture: str, dtype: torch.dtype, keep_packed: bool, config: Any = None
) -> tuple[str, int]:
    """(format, bytes) of one checkpoint entry once loaded, before any split across ranks."""
    v4 = architecture == DEEPSEEK_V4
    if entry.format in ("fp8", "fp4"):
        rows, cols = entry.logical
        packs = keep_packed and architecture in (DEEPSEEK_V4, QWEN3_NEXT)
        if packs and role(entry.name, architecture) == EXPERTS:
            if entry.format == "fp4":
                return "fp4 packed", entry.nbytes
            scales = rows * math.ceil(cols / FP8_BLOCK) * entry.scale_itemsize * entry.count
            return "fp8 packed", entry.nbytes - entry.scale_bytes + scales
        if (
            packs
            and architecture == QWEN3_NEXT
            and entry.format == "fp8"
            and _next_packed(entry.name, config)
        ):
            return "fp8 packed", entry.nbytes
        numel = rows * cols * entry.count * math.prod(entry.shape[:-2])
        return f"{DTYPE_NAMES[dtype]} (from {entry.format})", numel * dtype.itemsize
    numel = math.prod(entry.shape) * entry.count
    held = storage_dtype(release_name(entry.name) or entry.name, dtype) if v4 else dtype
    return DTYPE_NAMES.get(held, str(held)), numel * held.itemsize


def _next_packed(name: str, c: Any) -> bool:
    """Whether Qwen3-Next's loader keeps this FP8 projection packed (a checkpoint quantized
    throughout): a whole ``Linear`` weight, or parts of one on 128-row block edges."""
    bare = NEXT_PREFIX.sub("", name)
    if NEXT_SKIPPED.match(name) or ".experts." in bare:
        return False
    if NEXT_WHOLE.search(bare):
        return True
    if NEXT_QKV.search(bare):
        q_rows, kv_rows = 2 * c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
        return q_rows % FP8_BLOCK == 0 and kv_rows % FP8_BLOCK == 0
    if NEXT_GATE_UP.search(bare):
        shared = "shared_expert." in bare
        return (c.shared_expert_intermediate_size if shared else c.intermediate_size) % FP8_BLOCK == 0
    return False


def rank_weights(
    entries: list[Stored], config: Any, layout: Layout, dtype: torch.dtype, keep_packed: bool
) -> RankWeights:
    """What rank 0 of ``layout`` reads from the checkpoint and holds in memory, by format."""
    architecture = family(config)
    fractions: dict[str, float] = {}
    packed: set[str] = set()  # expert formats whose scale groups were checked
    out = RankWeights()
    for entry in entries:
        kind = role(entry.name, architecture)
        if kind not in fractions:
            fractions[kind] = share(kind, config, layout)
        if kind == EXPERTS and architecture == DEEPSEEK_V4 and entry.format not in packed:
            check_packed(config, layout, entry.format)  # the loader's refusal, before any byte is read
            packed.add(entry.format)
        part = fractions[kind]
        fmt, count = resident(entry, architecture, dtype, keep_packed, config)
        out.add((entry.format, round(entry.nbytes * part)), (fmt, round(count * part)))
    return out


def checkpoint_totals(entries: list[Stored], config: Any) -> tuple[dict[str, int], int]:
    """(bytes by stored format, bytes of tensors never loaded) of the whole checkpoint."""
    architecture, totals, skipped = family(config), {}, 0
    for entry in entries:
        totals[entry.format] = totals.get(entry.format, 0) + entry.nbytes
        skipped += entry.nbytes if role(entry.name, architecture) == SKIPPED else 0
    return totals, skipped
