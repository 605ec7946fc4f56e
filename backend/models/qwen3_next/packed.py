"""Keeping a quantized release's matrices packed while Qwen3-Next / Qwen3.5-MoE load.

Qwen's FP8 releases store each projection as e4m3 [out, in] with 128 x 128 block scales
(``weight_scale_inv``). ``Keeper.keep`` stores such a checkpoint matrix as it is, where the
model's storage can hold it without changing a value:

- a routed expert's gate, up or down matrix: its rows of the layer's ``w13`` / ``w2``, which
  become a ``quant.PackedExperts`` at the first of them (per-row scales: a block's scale
  repeated over its 128 rows, the very values dequantizing gives; FP8 or FP4);
- an FP8 matrix that fills a ``Linear``'s weight whole (``o_proj``, DeltaNet's ``out_proj``,
  the MLPs' and shared expert's ``down_proj``, the LM head), or rows of it that start on a
  128-row block and end on one or at the last row (``q_proj`` / ``k_proj`` / ``v_proj`` into
  ``qkv``, ``gate_proj`` / ``up_proj`` into ``w13``, when their sizes are whole blocks, as at
  the released shapes): the weight becomes a ``quant.PackedWeight`` (128 x 128 block scales)
  and that matrix's codes and block scales are copied into its rows.

Everything else is dequantized by the caller: DeltaNet's fused ``in_proj``, whose rows
Qwen3-Next's ``in_proj_qkvz`` / ``in_proj_ba`` interleave per key head and whose ``b`` / ``a``
parts are a few rows each (no 128-row blocks survive the regrouping), and any matrix whose
rows would cut a scale block. A weight that has taken plain data is never packed after, and
a packed weight that is then given plain or unpackable data is decoded back to the plain
parameter first (``plain``): mixed checkpoints load, packed only where all of a weight is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from codeagent.backend.quant import FP8_BLOCK, PackedExperts, PackedWeight, format_of, stored_scale

Packed = PackedWeight | PackedExperts


@dataclass(slots=True)
class Slot:
    module: nn.Module
    attr: str
    name: str  # the parameter's name in the model
    param: nn.Parameter  # the plain storage the model was built with
    packed: Packed | None = None


class Keeper:
    """The model's matrices that may be kept packed, by the identity of their plain parameter
    or of the packed storage that took its place."""

    def __init__(self, model: nn.Module) -> None:
        self.slots: dict[int, Slot] = {}
        self.plain_started: set[int] = set()  # parameters that took plain data: never packed
        for prefix, module in model.named_modules():
            for attr, param in module.named_parameters(recurse=False):
                if param.dim() == 3 or (param.dim() == 2 and attr == "weight"):
                    name = f"{prefix}.{attr}" if prefix else attr
                    self.slots[id(param)] = Slot(module, attr, name, param)

    def keep(self, target: Any, index: Any, tensor: torch.Tensor, scale: torch.Tensor) -> bool:
        """Store the whole quantized ``tensor`` (with ``scale``) as ``target[index]`` packed; False
        (nothing changed) where the storage cannot hold it exactly."""
        slot = self.slots.get(id(target))
        if slot is None or id(slot.param) in self.plain_started:
            return False
        if slot.param.dim() == 3:
            return self._expert(slot, index, tensor, scale)
        return self._rows(slot, index, tensor, scale)

    def plain(self, target: Any) -> Any:
        """The plain parameter to copy data into: a packed weight decoded back into it first."""
        slot = self.slots.get(id(target))
        if slot is None:
            return target
        self.plain_started.add(id(slot.param))
        if slot.packed is not None:
            with torch.no_grad():
                slot.param.copy_(_decoded(slot.packed, slot.param.dtype))
            self.slots.pop(id(slot.packed))
            slot.packed = None
            delattr(slot.module, slot.attr)
            setattr(slot.module, slot.attr, slot.param)
        return slot.param

    def key(self, target: Any) -> int:
        """The identity ``load`` counts filled elements by: the plain parameter's."""
        slot = self.slots.get(id(target))
        return id(target) if slot is None else id(slot.param)

    def packed_params(self) -> list[tuple[str, nn.Parameter]]:
        """(name, plain parameter) of every weight now held packed."""
        seen = {id(s.param): s for s in self.slots.values() if s.packed is not None}
        return [(s.name, s.param) for s in seen.values()]

    def _expert(self, slot: Slot, index: Any, tensor: torch.Tensor, scale: torch.Tensor) -> bool:
        if isinstance(index, int):
            expert, rows = index, slice(None)
        elif _pair(index):
            expert, rows = index
        else:
            return False  # the fused spelling of all experts at once: dequantized
        if slot.packed is None:
            try:
                packed: Packed = PackedExperts.empty(
                    tuple(slot.param.shape), tensor, scale, slot.param.device
                )
            except ValueError:
                return False
            self._replace(slot, packed)
        assert isinstance(slot.packed, PackedExperts)
        try:
            slot.packed.fill(expert, rows, tensor, scale)
        except ValueError:  # another format or scale kind, or a wrong shape: the plain path says which
            return False
        return True

    def _rows(self, slot: Slot, index: Any, tensor: torch.Tensor, scale: torch.Tensor) -> bool:
        total, width = slot.param.shape
        rows = slice(0, total) if index is None else index
        if not isinstance(rows, slice) or format_of(tensor) != "fp8":
            return False
        start, stop, _ = rows.indices(total)
        blocks = (-(-tensor.shape[0] // FP8_BLOCK), -(-width // FP8_BLOCK))
        fits = (
            tuple(tensor.shape) == (stop - start, width)
            and tuple(scale.shape) == blocks
            and start % FP8_BLOCK == 0
            and (stop % FP8_BLOCK == 0 or stop == total)
        )
        if not fits:
            return False
        scales = stored_scale(scale)
        if slot.packed is None:
            shape = (-(-total // FP8_BLOCK), blocks[1])
            self._replace(
                slot,
                PackedWeight(
                    torch.empty(total, width, dtype=torch.float8_e4m3fn, device=slot.param.device),
                    torch.empty(shape, dtype=scales.dtype, device=slot.param.device),
                    "fp8",
                ),
            )
        assert isinstance(slot.packed, PackedWeight)
        if slot.packed.scale.dtype != scales.dtype:
            return False
        first = start // FP8_BLOCK
        slot.packed.weight[start:stop].copy_(tensor)
        slot.packed.scale[first : first + blocks[0]].copy_(scales)
        return True

    def _replace(self, slot: Slot, packed: Packed) -> None:
        slot.packed = packed
        self.slots[id(packed)] = slot
        delattr(slot.module, slot.attr)  # a parameter: unregistered before a plain attribute takes its name
        setattr(slot.module, slot.attr, packed)


def _pair(index: Any) -> bool:
    return isinstance(index, tuple) and len(index) == 2 and isinstance(index[1], slice)


def _decoded(packed: Packed, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(packed, PackedWeight):
        return packed.dequantize(dtype)
    return torch.stack([packed.expert(e, dtype) for e in range(packed.shape[0])])
