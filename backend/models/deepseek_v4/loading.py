"""Loading a DeepSeek-V4 checkpoint into the model's flat weight dict (``weights.py``).

``load_into`` takes (key, tensor) pairs in either spelling: in-memory tensors (one
process) or ``stored.StoredTensor``s (a rank of a split model, which reads only its piece
of each: ``shares.py``). Quantized release tensors (FP8 e4m3 with 128x128 block scales,
FP4 e2m1 experts with one UE8M0 scale per 32 inputs; ``X.weight`` beside ``X.scale`` or
``X.weight_scale_inv``) are paired as they stream by (``backend/quant.py``), and their
scales read with the piece they cover. Routed experts stay packed when they come
quantized (``PackedExperts`` per layer and projection, FP4 or FP8 as the checkpoint has
them) unless the model was built with ``keep_quantized=False``
(``CODEAGENT_KEEP_QUANTIZED=0``); every other quantized weight is dequantized to the model
dtype. The first expert tensor of a layer's ``w13`` / ``w2`` that this rank holds decides
its storage. Under ``ep`` the experts other ranks hold are recognised and never read. With
routed experts in two homes (``on_host``: a layer's ``ffn.`` prefix -> its sorted host
experts), each expert goes straight to its home: ``ffn.w13``/``ffn.w2`` on the model's
device or ``ffn.host_w13``/``ffn.host_w2`` in host memory (``layers.offload.home_index``).

Every checkpoint tensor's whole shape is checked against the model's (so a wrong
checkpoint is refused, not silently sliced). Unknown, duplicated, missing or misshapen
weights are a ``ValueError`` that names them; a split that would cut packed experts' scale
groups is a ``LayoutError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

import torch

from codeagent.backend.distributed.layout import Layout
from codeagent.backend.layers.offload import home_index
from codeagent.backend.models.deepseek_v4.config import DeepseekV4Config
from codeagent.backend.models.deepseek_v4.shares import (
    Piece,
    Source,
    check_packed,
    held_experts,
    logical_shape,
    piece,
    take,
    take_quantized,
)
from codeagent.backend.models.deepseek_v4.weights import (
    EXPERT,
    Weights,
    expected_names,
    release_name,
    storage_device,
)
from codeagent.backend.packed_weights import PackedExperts
from codeagent.backend.quant import dequantize, format_of, paired


class WeightStore(Protocol):
    """What loading fills: the model's flat storage and what it was built with."""

    config: DeepseekV4Config
    layout: Layout
    shapes: dict[str, tuple[int, ...]]  # this rank's
    w: Weights
    dtype: torch.dtype
    device: torch.device
    keep_quantized: bool
    on_host: dict[str, list[int]]  # "layers.N.ffn." -> the experts it keeps in host memory


def load_into(model: WeightStore, weights: Iterable[tuple[str, Source]]) -> None:
    """Copy this rank's piece of each (key, tensor) pair into ``model.w``: quantized routed
    experts packed when ``model.keep_quantized``, every other quantized weight dequantized."""
    loaded: set[str] = set()
    unknown: list[str] = []
    started: set[str] = set()  # fused expert tensors that hold a checkpoint tensor already
    # MTP tensors are dropped before they would be paired with their scales
    kept = ((key, tensor) for key, tensor in weights if release_name(key) is not None)
    for key, tensor, scale in paired(kept):  # type: ignore[arg-type]
        name = release_name(key) or key
        if name in loaded:
            raise ValueError(f"weight {key!r} appears twice in the checkpoint")
        match = EXPERT.match(name)
        known = (
            _store_expert(model, key, name, match, tensor, scale, started)
            if match is not None
            else _store(model, key, name, tensor, scale)
        )
        if known:
            loaded.add(name)
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unexpected weights for DeepseekV4ForCausalLM: {_listing(unknown)}")
    missing = [name for name in expected_names(model.config, model.shapes) if name not in loaded]
    if missing:
        raise ValueError(f"checkpoint is missing {len(missing)} weights: {_listing(missing)}")
    _check_hash_tables(model)


def _store(model: WeightStore, key: str, name: str, tensor: Source, scale: Source | None) -> bool:
    """Put this rank's piece of one checkpoint tensor in place; False if the model has no such weight."""
    view = model.w.get(name)
    if not isinstance(view, torch.Tensor):
        return False
    part = piece(name, model.config, model.layout)
    _check_shape(key, tensor, part, tuple(view.shape))
    if scale is None:
        data = take(tensor, part)
    else:
        pieces = take_quantized(tensor, scale, part)
        try:
            if pieces is None:  # the share cuts scale blocks: dequantize the whole, then narrow
                data = take(dequantize(take(tensor, None), take(scale, None), model.dtype), part)
            else:
                data = dequantize(*pieces, model.dtype)
        except ValueError as err:
            raise ValueError(f"{key}: {err}") from err
    with torch.no_grad():
        view.copy_(data)
    return True


def _store_expert(
    model: WeightStore,
    key: str,
    name: str,
    match: re.Match[str],
    tensor: Source,
    scale: Source | None,
    started: set[str],
) -> bool:
    """One routed expert's matrix into its rows of the fused storage; another rank's is skipped."""
    prefix, expert, role = match.group(1), int(match.group(2)), match.group(3)
    c, layout = model.config, model.layout
    fused = prefix + ("w2" if role == "w2" else "w13")
    shape = model.shapes.get(fused)
    if shape is None or expert >= c.n_routed_experts:
        return False
    local = expert - held_experts(c, layout).start
    on_host = model.on_host.get(prefix)
    if on_host:
        in_host, local = home_index(on_host, local)
        if in_host:
            fused = prefix + "host_" + fused.removeprefix(prefix)
            shape = model.shapes[fused]
    if not 0 <= local < shape[0]:
        return True  # another rank's expert (ep): never read
    width = shape[1] // 2 if role != "w2" else shape[1]
    rows = {"w1": slice(0, width), "w3": slice(width, 2 * width), "w2": slice(0, width)}[role]
    part = piece(name, c, layout)
    _check_shape(key, tensor, part, (width, shape[2]))
    pieces = None
    if scale is not None:
        check_packed(c, layout, format_of(tensor))  # type: ignore[arg-type]
        pieces = take_quantized(tensor, scale, part)
        if pieces is None:
            raise ValueError(f"{key}: this rank's piece {part} cuts its scale groups")
    if fused not in started:
        _allocate_experts(model, fused, *(pieces or (tensor, None)), key)  # type: ignore[arg-type]
        started.add(fused)
    storage = model.w[fused]
    try:
        if isinstance(storage, PackedExperts):
            storage.fill(local, rows, *(pieces or (take(tensor, part), None)))  # type: ignore[arg-type]
            return True
        data = take(tensor, part) if pieces is None else dequantize(*pieces, model.dtype)
    except ValueError as err:
        raise ValueError(f"{key}: {err}") from err
    with torch.no_grad():
        storage[local, rows].copy_(data)
    return True


def _check_shape(key: str, source: Source, part: Piece | None, local: tuple[int, ...]) -> None:
    """The checkpoint tensor must have the model's whole shape (``local`` with the piece's extent)."""
    whole = local if part is None else (*local[: part.dim], part.extent, *local[part.dim + 1 :])
    shape = logical_shape(source)
    if shape != whole:
        raise ValueError(f"{key}: checkpoint shape {shape}, model expects {whole}")


def _allocate_experts(
    model: WeightStore, fused: str, tensor: torch.Tensor, scale: torch.Tensor | None, key: str
) -> None:
    """Storage for a layer's fused experts, chosen by the first of them to arrive: packed in its
    format if it is quantized and the model keeps experts packed, the model dtype otherwise."""
    placeholder, device = model.w[fused], storage_device(fused, model.device)
    if scale is not None and model.keep_quantized:
        try:
            model.w[fused] = PackedExperts.empty(tuple(placeholder.shape), tensor, scale, device)
        except ValueError as err:
            raise ValueError(f"{key}: {err}") from err
    elif isinstance(placeholder, PackedExperts) or placeholder.is_meta:
        model.w[fused] = torch.empty(placeholder.shape, dtype=model.dtype, device=device)


def _check_hash_tables(model: WeightStore) -> None:
    experts = model.config.n_routed_experts
    for name, table in model.w.items():
        if (
            name.endswith("tid2eid")
            and table.numel()
            and not 0 <= int(table.min()) <= int(table.max()) < experts
        ):
            raise ValueError(f"{name} routes to expert ids outside [0, {experts})")


def _listing(names: list[str], shown: int = 8) -> str:
    text = ", ".join(repr(n) for n in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")
