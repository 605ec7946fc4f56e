"""Qwen3-MoE checkpoint keys -> where their data goes in this rank's model, and the loading loop.

Each checkpoint key maps to ``Placement``s: a parameter, the index of its slice that takes
the data, and the ``Piece`` of the checkpoint tensor this rank reads (one dimension
narrowed, per ``distributed/layout.py``'s rules). A checkpoint tensor is read once per
placement, and only its piece: with ``stored.StoredTensor`` sources (a split model) a rank
reads its slices from the files and nothing else; with plain tensors (one process, or
weights that were dequantized) the piece is a view. An expert another rank holds (``ep``)
has no placement and is never read. Both spellings of the experts are taken: per-expert
matrices (``experts.E.gate_proj.weight``) and the fused ``experts.gate_up_proj``.

Every placement checks the whole checkpoint tensor's shape against the model's (so a
wrong checkpoint is refused, not silently sliced), and after the stream every parameter
must be filled. Quantized weights (FP8 with scales) are read whole and dequantized first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from codeagent.backend.quant import dequantizing, is_quantized, weight_key_of
from codeagent.backend.stored import StoredTensor

if TYPE_CHECKING:
    from codeagent.backend.models.qwen3_moe.model import DecoderLayer, Qwen3MoeForCausalLM, SparseMoe


@dataclass(frozen=True, slots=True)
class Piece:
    dim: int
    start: int
    stop: int
    extent: int  # the checkpoint tensor's whole size along dim


@dataclass(frozen=True, slots=True)
class Placement:
    target: torch.Tensor
    index: Any  # None: the whole parameter
    piece: Piece | None  # None: the whole checkpoint tensor


Source = torch.Tensor | StoredTensor


def load(model: Qwen3MoeForCausalLM, weights: Iterable[tuple[str, Source]]) -> None:
    """Fill ``model``'s parameters from (key, tensor) pairs; every parameter must end up filled."""
    filled: dict[int, int] = {}
    for key, source in dequantizing(_whole_if_quantized(weights), model.embed.dtype):  # type: ignore[arg-type]
        for place in placements(model, key):
            view = place.target if place.index is None else place.target[place.index]
            data = _take(key, source, place.piece, tuple(view.shape))
            with torch.no_grad():
                view.copy_(data)
            filled[id(place.target)] = filled.get(id(place.target), 0) + view.numel()
    if model.config.tie_word_embeddings and id(model.lm_head.weight) not in filled:
        model.lm_head.weight = model.embed
        filled[id(model.embed)] = filled.get(id(model.embed), 0)
    missing = [name for name, p in model.named_parameters() if filled.get(id(p), 0) < p.numel()]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"checkpoint is missing weights for {len(missing)} parameters: {shown}")


def _whole_if_quantized(weights: Iterable[tuple[str, Source]]) -> Iterator[tuple[str, Source]]:
    for key, source in weights:
        if isinstance(source, StoredTensor) and (is_quantized(source) or weight_key_of(key)):  # type: ignore[arg-type]
            yield key, source.full()
        else:
            yield key, source


def _take(key: str, source: Source, piece: Piece | None, want: tuple[int, ...]) -> torch.Tensor:
    shape = tuple(source.shape)
    whole = want if piece is None else (*want[: piece.dim], piece.extent, *want[piece.dim + 1 :])
    if shape != whole:
        raise ValueError(f"{key}: checkpoint shape {shape}, model expects {whole}")
    if piece is None:
        return source.full() if isinstance(source, StoredTensor) else source
    if isinstance(source, StoredTensor):
        return source.read(piece.dim, piece.start, piece.stop)
    return source.narrow(piece.dim, piece.start, piece.stop - piece.start)


def placements(model: Qwen3MoeForCausalLM, key: str) -> list[Placement]:
    name = key.removeprefix("model.")
    layout, c = model.group.layout, model.config
    if name in ("embed_tokens.weight", "lm_head.weight"):
        rows = layout.vocab(c.vocab_size)
        target = model.embed if name == "embed_tokens.weight" else model.lm_head.weight
        return [Placement(target, None, Piece(0, rows.start, rows.stop, c.vocab_size))]
    if name == "norm.weight":
        return [Placement(model.norm.weight, None, None)]
    match = re.fullmatch(r"layers\.(\d+)\.(.+)", name)
    if not match or int(match.group(1)) >= len(model.layers):
        raise KeyError(f"unexpected weight {key!r} for {type(model).__name__}")
    layer: DecoderLayer = model.layers[int(match.group(1))]  # type: ignore[assignment]
    return _layer(layer, match.group(2), model, key)


def _layer(layer: DecoderLayer, rest: str, model: Qwen3MoeForCausalLM, key: str) -> list[Placement]:
    from codeagent.backend.models.qwen3_moe.model import SparseMoe

    c, layout, attn = model.config, model.group.layout, layer.attn
    d, heads, kv = c.head_dim, layout.split(c.num_attention_heads, "attention heads"), attn.kv_slice
    q_rows, kv_rows = attn.heads * d, attn.kv_heads * d
    whole = {
        "input_layernorm.weight": layer.input_norm.weight,
        "post_attention_layernorm.weight": layer.post_norm.weight,
        "self_attn.q_norm.weight": attn.q_norm.weight,
        "self_attn.k_norm.weight": attn.k_norm.weight,
    }
    if rest in whole:
        return [Placement(whole[rest], None, None)]
    q_piece = Piece(0, heads.start * d, heads.stop * d, c.num_attention_heads * d)
    kv_piece = Piece(0, kv.start * d, kv.stop * d, c.num_key_value_heads * d)
    split = {
        "self_attn.q_proj.weight": Placement(attn.qkv.weight, slice(0, q_rows), q_piece),
        "self_attn.k_proj.weight": Placement(attn.qkv.weight, slice(q_rows, q_rows + kv_rows), kv_piece),
        "self_attn.v_proj.weight": Placement(
            attn.qkv.weight, slice(q_rows + kv_rows, q_rows + 2 * kv_rows), kv_piece
        ),
        "self_attn.o_proj.weight": Placement(attn.o.weight, None, Piece(1, *_span(q_piece))),
    }
    if rest in split:
        return [split[rest]]
    if isinstance(layer.mlp, SparseMoe):
        return _experts(layer.mlp, rest, model, key)
    width = c.intermediate_size
    part = layout.split(width, "the MLP's intermediate size")
    share = part.stop - part.start
    mlp = layer.mlp
    dense = {
        "mlp.gate_proj.weight": Placement(
            mlp.w13.weight, slice(0, share), Piece(0, part.start, part.stop, width)
        ),
        "mlp.up_proj.weight": Placement(
            mlp.w13.weight, slice(share, 2 * share), Piece(0, part.start, part.stop, width)
        ),
        "mlp.down_proj.weight": Placement(mlp.w2.weight, None, Piece(1, part.start, part.stop, width)),
    }
    if rest not in dense:
        raise KeyError(f"unexpected weight {key!r} for a dense layer")
    return [dense[rest]]


def _span(piece: Piece) -> tuple[int, int, int]:
    return piece.start, piece.stop, piece.extent


def _experts(mlp: SparseMoe, rest: str, model: Qwen3MoeForCausalLM, key: str) -> list[Placement]:
    c, layout = model.config, model.group.layout
    if rest == "mlp.gate.weight":
        return [Placement(mlp.gate.weight, None, None)]
    experts, width = c.num_experts, c.moe_intermediate_size
    first, share = mlp.first_expert, mlp.width
    cols = slice(0, share), slice(share, 2 * share)
    if mlp.homes is not None and rest in ("mlp.experts.gate_up_proj", "mlp.experts.down_proj"):
        raise ValueError(
            f"{key}: the fused expert spelling cannot be split between two homes; drop --cpu-experts"
        )
    if layout.ep:
        whole = Piece(0, first, first + mlp.w13.shape[0], experts)
        fused = {"mlp.experts.gate_up_proj": mlp.w13, "mlp.experts.down_proj": mlp.w2}
        if rest in fused:
            return [Placement(fused[rest], None, whole)]
    else:
        part = layout.split(width, "the experts' intermediate size")
        if rest == "mlp.experts.gate_up_proj":  # fused: [E, 2I, hidden], gate rows then up rows
            return [
                Placement(mlp.w13, (slice(None), cols[0]), Piece(1, part.start, part.stop, 2 * width)),
                Placement(
                    mlp.w13,
                    (slice(None), cols[1]),
                    Piece(1, width + part.start, width + part.stop, 2 * width),
                ),
            ]
        if rest == "mlp.experts.down_proj":  # [E, hidden, I]
            return [Placement(mlp.w2, None, Piece(2, part.start, part.stop, width))]
    match = re.fullmatch(r"mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight", rest)
    if not match or int(match.group(1)) >= experts:
        raise KeyError(f"unexpected weight {key!r} for a sparse layer")
    expert, which = int(match.group(1)) - first, match.group(2)
    held = mlp.w13.shape[0] + (mlp.homes.on_host if mlp.homes is not None else 0)
    if not 0 <= expert < held:
        return []  # another rank's expert
    rows = layout.split(width, "the experts' intermediate size") if not layout.ep else slice(0, width)
    w13, w2 = mlp.w13, mlp.w2
    if mlp.homes is not None:  # the expert lives on the device or in host memory
        w13, w2, expert = mlp.homes.slot(expert)
    if which == "down":
        return [Placement(w2, expert, Piece(1, rows.start, rows.stop, width))]
    return [Placement(w13, (expert, cols[which == "up"]), Piece(0, rows.start, rows.stop, width))]
