"""Qwen3-Next / Qwen3.5-MoE checkpoint keys -> the model's parameters, and the loading loop.

Keys are taken under ``model.`` or ``model.language_model.`` (a Qwen3.5 release); the
multi-token-prediction head (``mtp.*``) and a release's vision tower (``model.visual.*``,
``visual.*``) are skipped. Spellings:

- DeltaNet input projections: Qwen3-Next's ``in_proj_qkvz`` [Hk·(2Dk + 2r·Dv), hidden] and
  ``in_proj_ba`` [Hk·2r, hidden], grouped per key head (for key head h: its q, k, then the r
  value heads' v and z; b then a), regrouped here into the fused ``in_proj``'s head-major
  q | k | v | z | b | a (``deltanet.py``); Qwen3.5's ``in_proj_qkv`` / ``in_proj_z`` /
  ``in_proj_b`` / ``in_proj_a`` are already head-major and go to their row ranges;
- ``conv1d.weight`` [C, 1, K] -> ``conv`` [C, K]; ``A_log`` and ``dt_bias`` kept in float32;
- attention: ``q_proj`` (query and gate rows per head, as stored), ``k_proj``, ``v_proj`` into
  ``qkv``; experts per matrix (``experts.E.gate_proj.weight``) or fused
  (``experts.gate_up_proj`` [E, 2I, hidden], ``experts.down_proj``); the shared expert's and
  dense MLPs' gate/up rows into their ``w13``.

Every key's tensor must have the shape the model expects (else a ``ValueError`` naming both),
an unknown key is a ``KeyError``, and after the stream every parameter must be filled.

Quantized weights (Qwen's FP8: e4m3 with 128 x 128 block scales, ``weight_scale_inv``) are
paired with their scales as they stream by (``quant.paired``) and, unless the model was built
with ``keep_quantized=False`` (``CODEAGENT_KEEP_QUANTIZED=0``), kept packed where the
model's storage holds them exactly (``packed.py``): the routed experts (``PackedExperts``),
and the attention's ``qkv`` and ``o``, DeltaNet's ``out_proj``, the dense MLPs' and shared
expert's ``w13`` / ``w2`` and the LM head (``PackedWeight``) where their parts are whole
128-row blocks. Dequantized to the model dtype: DeltaNet's ``in_proj`` (its parts are
regrouped per key head, and ``b`` / ``a`` are a few rows each, so no block survives), the
routers (``gate``, ``shared_expert_gate``), any matrix whose rows would cut a scale block,
and everything when ``keep_quantized`` is off. Either way the model computes with the
values dequantizing gives; packed, the native kernels read them as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch

from codeagent.backend.models.qwen3_next.moe import SparseMoe
from codeagent.backend.models.qwen3_next.packed import Keeper
from codeagent.backend.quant import dequantize, format_of, paired

if TYPE_CHECKING:
    from codeagent.backend.models.qwen3_next.deltanet import GatedDeltaNet
    from codeagent.backend.models.qwen3_next.model import DecoderLayer, Qwen3NextForCausalLM

Place = tuple[torch.Tensor, Any, torch.Tensor]  # (parameter, index into it or None, data for it)
SKIPPED = re.compile(r"(mtp\.|model\.visual\.|visual\.).*")
ROUTERS = re.compile(r"mlp\.(gate|shared_expert_gate)\.weight$")  # kept plain, as --pack keeps them


def load(model: Qwen3NextForCausalLM, stream: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Fill ``model``'s parameters from (key, tensor) pairs; every parameter must end up filled.
    Quantized matrices stay packed where ``packed.Keeper`` can hold them and the model keeps
    quantized weights (``keep_quantized``); the others are dequantized to the model's dtype."""
    filled: dict[int, int] = {}
    keeper = Keeper(model, model.embed.device) if model.keep_quantized else None
    for key, tensor, scale in paired(stream):
        if SKIPPED.fullmatch(key):
            continue
        found = _places(model, key, tensor)
        if scale is not None:
            counted = [keeper.key(target) for target, _, _ in found] if keeper is not None else []
            if keeper is not None and _kept(keeper, key, found, tensor, scale):
                for slot in counted:  # keyed before packing replaced the targets
                    filled[slot] = filled.get(slot, 0) + _logical(tensor)
                continue
            try:
                tensor = dequantize(tensor, scale, model.embed.dtype)
            except ValueError as err:
                raise ValueError(f"{key}: {err}") from err
            found = _places(model, key, tensor)
        plain: dict[int, torch.Tensor] = {}  # a key's places share their target: resolved once
        for target, index, data in found:
            if keeper is not None:
                if id(target) not in plain:
                    plain[id(target)] = keeper.plain(target)
                target = plain[id(target)]
            view = target if index is None else target[index]
            if tuple(view.shape) != tuple(data.shape):
                raise ValueError(
                    f"{key}: checkpoint shape {tuple(tensor.shape)} does not fit the model's {tuple(view.shape)}"
                )
            with torch.no_grad():
                view.copy_(data)
            slot = keeper.key(target) if keeper is not None else id(target)
            filled[slot] = filled.get(slot, 0) + view.numel()
    _check_filled(model, keeper, filled)


def _check_filled(model: Qwen3NextForCausalLM, keeper: Keeper | None, filled: dict[int, int]) -> None:
    """A tied head takes the embedding if the checkpoint has none; then every weight must be filled."""
    head = keeper.key(model.lm_head.weight) if keeper is not None else id(model.lm_head.weight)
    if model.config.tie_word_embeddings and head not in filled:
        if keeper is not None:
            keeper.drop(model.lm_head.weight)
        model.lm_head.weight = model.embed
    missing = [
        name
        for name, p in model.named_parameters()
        if (keeper is None or not keeper.holds(p)) and filled.get(id(p), 0) < p.numel()
    ]
    missing += keeper.missing(filled) if keeper is not None else []
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"checkpoint is missing weights for {len(missing)} parameters: {shown}")


def _places(model: Qwen3NextForCausalLM, key: str, tensor: torch.Tensor) -> list[Place]:
    try:
        return places(model, key, tensor)
    except ValueError as err:
        raise ValueError(f"{key}: {err}") from err


def _kept(keeper: Keeper, key: str, found: list[Place], tensor: torch.Tensor, scale: torch.Tensor) -> bool:
    """Whether the quantized ``tensor`` went to packed storage: a whole matrix (not regrouped or
    reshaped, as DeltaNet's ``in_proj`` parts and the conv are), not a router, and every place
    of it able to hold it (``packed.Keeper``)."""
    if ROUTERS.search(key) or any(data is not tensor for _, _, data in found):
        return False
    return all(keeper.keep(target, index, tensor, scale) for target, index, _ in found)


def _logical(tensor: torch.Tensor) -> int:
    """Elements a quantized checkpoint tensor stands for (FP4: two a byte)."""
    return tensor.numel() * (2 if format_of(tensor) == "fp4" else 1)


def places(model: Qwen3NextForCausalLM, key: str, tensor: torch.Tensor) -> list[Place]:
    name = re.sub(r"^model\.(language_model\.)?", "", key)
    top = {
        "embed_tokens.weight": model.embed,
        "lm_head.weight": model.lm_head.weight,
        "norm.weight": model.norm.weight,
    }
    if name in top:
        return [(top[name], None, tensor)]
    match = re.fullmatch(r"layers\.(\d+)\.(.+)", name)
    if not match or int(match.group(1)) >= len(model.layers):
        raise KeyError(f"unexpected weight {key!r} for {type(model).__name__}")
    layer: DecoderLayer = model.layers[int(match.group(1))]  # type: ignore[assignment]
    rest = match.group(2)
    found = _norms(layer, rest, tensor)
    if found is None:
        found = _mixer(layer, rest, tensor)
    if found is None:
        found = _mlp(layer, rest, tensor)
    if found is None:
        raise KeyError(f"unexpected weight {key!r} for {type(model).__name__}")
    return found


def _norms(layer: DecoderLayer, rest: str, tensor: torch.Tensor) -> list[Place] | None:
    norms = {
        "input_layernorm.weight": layer.input_norm.weight,
        "post_attention_layernorm.weight": layer.post_norm.weight,
    }
    return [(norms[rest], None, tensor)] if rest in norms else None


def _mixer(layer: DecoderLayer, rest: str, tensor: torch.Tensor) -> list[Place] | None:
    if layer.full and rest.startswith("self_attn."):
        attn = layer.mixer
        q_rows, kv_rows = 2 * attn.heads * attn.head_dim, attn.kv_heads * attn.head_dim
        parts = {
            "q_proj.weight": (attn.qkv.weight, slice(0, q_rows)),
            "k_proj.weight": (attn.qkv.weight, slice(q_rows, q_rows + kv_rows)),
            "v_proj.weight": (attn.qkv.weight, slice(q_rows + kv_rows, None)),
            "o_proj.weight": (attn.o.weight, None),
            "q_norm.weight": (attn.q_norm.weight, None),
            "k_norm.weight": (attn.k_norm.weight, None),
        }
        what = rest.removeprefix("self_attn.")
        return [(*parts[what], tensor)] if what in parts else None
    if not layer.full and rest.startswith("linear_attn."):
        return _deltanet(layer.mixer, rest.removeprefix("linear_attn."), tensor)  # type: ignore[arg-type]
    return None


def _deltanet(net: GatedDeltaNet, what: str, tensor: torch.Tensor) -> list[Place] | None:
    hk, hv, dk, dv = net.k_heads, net.v_heads, net.k_dim, net.v_dim
    kd, vd = hk * dk, hv * dv
    # the fused in_proj's row ranges: q | k | v | z | b | a
    rows = dict(zip("qkvzba", _ranges([kd, kd, vd, vd, hv, hv]), strict=True))
    w = net.in_proj.weight
    if what == "in_proj_qkvz.weight":
        r = hv // hk
        groups = _grouped(tensor, hk, [dk, dk, r * dv, r * dv])
        return [(w, rows[part], data) for part, data in zip("qkvz", groups, strict=True)]
    if what == "in_proj_ba.weight":
        groups = _grouped(tensor, hk, [hv // hk, hv // hk])
        return [(w, rows[part], data) for part, data in zip("ba", groups, strict=True)]
    flat: dict[str, tuple[torch.Tensor, Any]] = {
        "in_proj_qkv.weight": (w, slice(rows["q"].start, rows["v"].stop)),
        "in_proj_z.weight": (w, rows["z"]),
        "in_proj_b.weight": (w, rows["b"]),
        "in_proj_a.weight": (w, rows["a"]),
        "out_proj.weight": (net.out_proj.weight, None),
        "norm.weight": (net.norm, None),
        "A_log": (net.A_log, None),
        "dt_bias": (net.dt_bias, None),
    }
    if what == "conv1d.weight":
        return [(net.conv, None, tensor.squeeze(1) if tensor.dim() == 3 else tensor)]
    return [(*flat[what], tensor)] if what in flat else None


def _ranges(sizes: list[int]) -> list[slice]:
    out, start = [], 0
    for size in sizes:
        out.append(slice(start, start + size))
        start += size
    return out


def _grouped(tensor: torch.Tensor, groups: int, sizes: list[int]) -> list[torch.Tensor]:
    """A [groups·sum(sizes), hidden] weight stored group by group (each group's parts in turn) ->
    each part's rows of every group, group-major: [groups·size, hidden] per part."""
    if tensor.dim() != 2 or tensor.shape[0] != groups * sum(sizes):
        raise ValueError(
            f"checkpoint shape {tuple(tensor.shape)} is not {groups} groups of {sum(sizes)} rows"
        )
    parts = tensor.view(groups, sum(sizes), -1).split(sizes, dim=1)
    return [part.reshape(groups * size, -1) for part, size in zip(parts, sizes, strict=True)]


def _mlp(layer: DecoderLayer, rest: str, tensor: torch.Tensor) -> list[Place] | None:
    mlp = layer.mlp
    if not rest.startswith("mlp."):
        return None
    what = rest.removeprefix("mlp.")
    if isinstance(mlp, SparseMoe):
        fixed: dict[str, tuple[torch.Tensor, Any]] = {
            "gate.weight": (mlp.gate.weight, None),
            "shared_expert_gate.weight": (mlp.shared_gate.weight, None),
            "experts.gate_up_proj": (mlp.w13, None),
            "experts.down_proj": (mlp.w2, None),
        }
        if what in fixed:
            return [(*fixed[what], tensor)]
        if what.startswith("shared_expert."):
            return _dense(mlp.shared, what.removeprefix("shared_expert."), tensor)
        return _expert(mlp, what, tensor)
    return _dense(mlp, what, tensor)  # type: ignore[arg-type]


def _dense(mlp: Any, what: str, tensor: torch.Tensor) -> list[Place] | None:
    width = mlp.w2.weight.shape[1]
    parts: dict[str, tuple[torch.Tensor, Any]] = {
        "gate_proj.weight": (mlp.w13.weight, slice(0, width)),
        "up_proj.weight": (mlp.w13.weight, slice(width, None)),
        "down_proj.weight": (mlp.w2.weight, None),
    }
    return [(*parts[what], tensor)] if what in parts else None


def _expert(mlp: Any, what: str, tensor: torch.Tensor) -> list[Place] | None:
    match = re.fullmatch(r"experts\.(\d+)\.(gate|up|down)_proj\.weight", what)
    if not match or int(match.group(1)) >= mlp.w13.shape[0]:
        return None
    expert, which = int(match.group(1)), match.group(2)
    width = mlp.w2.shape[2]
    index: dict[str, tuple[torch.Tensor, Any]] = {
        "gate": (mlp.w13, (expert, slice(0, width))),
        "up": (mlp.w13, (expert, slice(width, None))),
        "down": (mlp.w2, expert),
    }
    return [(*index[which], tensor)]
