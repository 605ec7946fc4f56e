"""DeepSeek-V4 split across ranks: which part of each weight a rank holds, and reading only it.

The rules are ``distributed/layout.py``'s, by release name (``piece``): the query heads'
``attn.wq_b`` rows and ``attn.attn_sink`` by attention heads; ``attn.wo_a`` rows and
``attn.wo_b`` columns by output groups; the indexer's ``wq_b`` rows and ``weights_proj``
rows by indexer heads; the shared expert's ``w1``/``w3`` rows and ``w2`` columns by its
width; each routed expert's the same way, or with ``ep`` whole experts (``held_experts``);
``embed`` and ``head`` by vocabulary rows. Everything else is replicated: ``wq_a``, the
latent's ``wkv``, the compressors, norms, mHC, the router and its hash table.
``local_shapes`` is the model's storage for one rank (every size this rank's share), so a
split model allocates nothing it does not hold.

Reading (``take``, ``take_quantized``): a rank reads only its piece of each checkpoint
tensor (``StoredTensor.read`` along the split dimension; a view of an in-memory tensor).
A quantized weight's scales are read with it: FP4's one scale per row and 32 inputs, FP8's
one per 128x128 block, so its piece must not cut a group. Routed experts (the bulk) always
read their piece: a width share that would cut a group is a ``LayoutError``
(``check_packed``). A dense FP8 projection whose share cuts its 128-row or -column blocks
(only in tiny models: the released shares are multiples of 128) is read whole and
dequantized, then narrowed, so its whole dequantized tensor is held for a moment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from codeagent.backend.distributed.layout import Layout
from codeagent.backend.models.deepseek_v4.config import DeepseekV4Config
from codeagent.backend.models.deepseek_v4.weights import ROUTED, weight_shapes
from codeagent.backend.quant import FP4_GROUP, FP8_BLOCK, format_of
from codeagent.backend.stored import StoredTensor

Source = torch.Tensor | StoredTensor
ROUTED_WIDTH = "the routed experts' intermediate size"
GROUPS = {
    "fp4": (FP4_GROUP, "FP4's scale groups of 32 inputs"),
    "fp8": (FP8_BLOCK, "FP8's 128x128 scale blocks"),
}


@dataclass(frozen=True, slots=True)
class Piece:
    dim: int
    start: int
    stop: int
    extent: int  # the checkpoint tensor's whole size along dim


def _rules(c: DeepseekV4Config, ep: bool) -> tuple[tuple[re.Pattern[str], int, int | None, int, str], ...]:
    """(release name pattern, dim, count split among ranks, size of one, what it is); count None: whole."""
    heads, width, shared = (
        c.num_attention_heads,
        None if ep else c.moe_intermediate_size,
        c.moe_intermediate_size,
    )
    return (
        (re.compile(r"attn\.indexer\.wq_b\.weight$"), 0, c.index_n_heads, c.index_head_dim, "indexer heads"),
        (re.compile(r"attn\.indexer\.weights_proj\.weight$"), 0, c.index_n_heads, 1, "indexer heads"),
        (re.compile(r"attn\.wq_b\.weight$"), 0, heads, c.head_dim, "attention heads"),
        (re.compile(r"attn\.attn_sink$"), 0, heads, 1, "attention heads"),
        (re.compile(r"attn\.wo_a\.weight$"), 0, c.o_groups, c.o_lora_rank, "output groups"),
        (re.compile(r"attn\.wo_b\.weight$"), 1, c.o_groups, c.o_lora_rank, "output groups"),
        (
            re.compile(r"shared_experts\.w[13]\.weight$"),
            0,
            shared,
            1,
            "the shared expert's intermediate size",
        ),
        (re.compile(r"shared_experts\.w2\.weight$"), 1, shared, 1, "the shared expert's intermediate size"),
        (re.compile(r"ffn\.experts\.\d+\.w[13]\.weight$"), 0, width, 1, ROUTED_WIDTH),
        (re.compile(r"ffn\.experts\.\d+\.w2\.weight$"), 1, width, 1, ROUTED_WIDTH),
    )


def piece(name: str, c: DeepseekV4Config, layout: Layout) -> Piece | None:
    """This rank's piece of the checkpoint tensor ``name`` (release spelling, experts unfused);
    None: the whole tensor (replicated, one process, or a whole expert under ``ep``)."""
    if layout.single:
        return None
    if name in ("embed.weight", "head.weight"):
        rows = layout.vocab(c.vocab_size)
        return Piece(0, rows.start, rows.stop, c.vocab_size)
    for pattern, dim, count, unit, what in _rules(c, layout.ep):
        if pattern.search(name):
            if count is None:
                return None
            part = layout.split(count, what)
            return Piece(dim, part.start * unit, part.stop * unit, count * unit)
    return None


def held_experts(c: DeepseekV4Config, layout: Layout) -> slice:
    """The routed experts this rank holds: all of them, or with ``ep`` its E/tp whole."""
    return layout.split(c.n_routed_experts, "routed experts") if layout.ep else slice(0, c.n_routed_experts)


def local_shapes(c: DeepseekV4Config, layout: Layout) -> dict[str, tuple[int, ...]]:
    """``weights.weight_shapes`` at this rank's shares (``LayoutError`` where a size does not divide)."""
    shapes = weight_shapes(c)
    if layout.single:
        return shapes
    experts = held_experts(c, layout)
    count, hidden = experts.stop - experts.start, c.hidden_size
    width = c.moe_intermediate_size
    if not layout.ep:
        part = layout.split(width, ROUTED_WIDTH)
        width = part.stop - part.start
    for name, shape in shapes.items():
        if ROUTED.search(name):
            shapes[name] = (count, 2 * width, hidden) if name.endswith("w13") else (count, hidden, width)
        elif (p := piece(name, c, layout)) is not None:
            shapes[name] = (*shape[: p.dim], p.stop - p.start, *shape[p.dim + 1 :])
    return shapes


def declared_expert_format(c: DeepseekV4Config) -> str | None:
    """The routed experts' format config.json declares: ``expert_dtype``, else FP8 when the
    checkpoint declares quantization at all (as DeepSeek-V3's did), else None."""
    declared = c.extra.get("expert_dtype")
    if declared in GROUPS:
        return str(declared)
    return "fp8" if "quantization_config" in c.extra else None


def check_packed(c: DeepseekV4Config, layout: Layout, fmt: str | None) -> None:
    """Refuse a width split of quantized routed experts that would cut their scale groups."""
    if fmt in GROUPS and not layout.ep and not layout.single:
        unit, units = GROUPS[fmt]
        layout.split_whole(c.moe_intermediate_size, unit, ROUTED_WIDTH, units)


def logical_shape(source: Source) -> tuple[int, ...]:
    """A checkpoint tensor's shape in values (FP4 packs two inputs a byte)."""
    shape = tuple(source.shape)
    return (*shape[:-1], shape[-1] * 2) if format_of(source) == "fp4" else shape  # type: ignore[arg-type]


def take(source: Source, p: Piece | None) -> torch.Tensor:
    """The piece of a plain checkpoint tensor (the whole one for None)."""
    if p is None:
        return source.full() if isinstance(source, StoredTensor) else source
    return _narrow(source, p.dim, p.start, p.stop)


def take_quantized(
    weight: Source, scale: Source, p: Piece | None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The piece of a quantized weight and the scales of its groups, still packed; None where
    the piece cuts a scale group (FP8's 128x128 blocks; FP4's 32 inputs along dim 1)."""
    if p is None:
        return take(weight, None), take(scale, None)
    fmt = format_of(weight)  # type: ignore[arg-type]
    rows, cols = logical_shape(weight)
    group = FP4_GROUP if fmt == "fp4" else FP8_BLOCK
    scales = (rows, cols // group) if fmt == "fp4" else (-(-rows // group), -(-cols // group))
    if tuple(scale.shape) != scales:
        raise ValueError(
            f"{str(fmt).upper()} weight {(rows, cols)} needs scales {scales}, got {tuple(scale.shape)}"
        )
    if fmt == "fp4" and p.dim == 0:
        return _narrow(weight, 0, p.start, p.stop), _narrow(scale, 0, p.start, p.stop)
    if p.start % group or (p.stop % group and p.stop != p.extent):
        return None
    packed = (p.start // 2, p.stop // 2) if fmt == "fp4" else (p.start, p.stop)
    return _narrow(weight, p.dim, *packed), _narrow(scale, p.dim, p.start // group, -(-p.stop // group))


def _narrow(source: Source, dim: int, start: int, stop: int) -> torch.Tensor:
    if isinstance(source, StoredTensor):
        return source.read(dim, start, stop)
    return source.narrow(dim, start, stop - start)
