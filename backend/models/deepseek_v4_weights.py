"""Loading DeepSeek-V4 weights into the flat dict, from either spelling of the keys."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch

from codeagent.backend.models.deepseek_v4 import canonical_name

EXPERT = re.compile(r"^(layers\.\d+\.ffn\.)experts\.(\d+)\.(w1|w2|w3)\.weight$")


def load_into(model: Any, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
    shapes: dict[str, tuple[int, ...]] = model.shapes
    filled: dict[str, int] = {}
    for key, tensor in weights:
        name = canonical_name(key)
        if name is None:
            continue
        target, index = _target(model, name, shapes, key)
        view = target if index is None else target[index]
        if tuple(view.shape) != tuple(tensor.shape):
            raise ValueError(
                f"{key}: checkpoint shape {tuple(tensor.shape)}, model expects {tuple(view.shape)}"
            )
        with torch.no_grad():
            view.copy_(tensor)
        base = _base(name)
        filled[base] = filled.get(base, 0) + view.numel()
    missing = [name for name, shape in shapes.items() if filled.get(name, 0) < _numel(shape)]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"checkpoint is missing weights for {len(missing)} parameters: {shown}")
    model.layer_cache = {}


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def _base(name: str) -> str:
    match = EXPERT.match(name)
    if not match:
        return name
    return match.group(1) + ("w2" if match.group(3) == "w2" else "w13")


def _target(model: Any, name: str, shapes: dict[str, tuple[int, ...]], key: str) -> tuple[torch.Tensor, Any]:
    base = _base(name)
    if base not in shapes:
        raise KeyError(f"unexpected weight {key!r} for DeepseekV4ForCausalLM")
    if base not in model.w:
        dtype = torch.long if base.endswith("tid2eid") else model.dtype
        model.w[base] = torch.empty(shapes[base], dtype=dtype, device=model.device)
    target = model.w[base]
    match = EXPERT.match(name)
    if not match:
        return target, None
    expert, which = int(match.group(2)), match.group(3)
    inter = model.config.moe_intermediate_size
    if which == "w2":
        return target, expert
    return target, (expert, slice(0, inter) if which == "w1" else slice(inter, 2 * inter))
