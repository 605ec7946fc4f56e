"""Keeping a quantized release's matrices packed while Qwen3-Next / Qwen3.5-MoE load.

Qwen's FP8 releases store each projection as e4m3 [out, in] with 128 x 128 block scales
(``weight_scale_inv``). ``Keeper.keep`` stores such a checkpoint matrix as it is, where the
model's storage can hold it without changing a value:

- a routed expert's gate, up or down matrix: its rows of the layer's ``w13`` / ``w2``, which
  become a ``packed_weights.PackedExperts`` at the first of them (per-row scales: a block's scale
  repeated over its 128 rows, the very values dequantizing gives; FP8 or FP4);
- an FP8 matrix that fills a ``Linear``'s weight whole (``o_proj``, DeltaNet's ``out_proj``,
  the MLPs' and shared expert's ``down_proj``, the LM head), or rows of it that start on a
  128-row block and end on one or at the last row (``q_proj`` / ``k_proj`` / ``v_proj`` into
  ``qkv``, ``gate_proj`` / ``up_proj`` into ``w13``, when their sizes are whole blocks, as at
  the released shapes): the weight becomes a ``packed_weights.PackedWeight`` (128 x 128 block scales)
  and that matrix's codes and block scales are copied into its rows.

Everything else is dequantized by the caller: DeltaNet's fused ``in_proj``, whose rows
Qwen3-Next's ``in_proj_qkvz`` / ``in_proj_ba`` interleave per key head and whose ``b`` / ``a``
parts are a few rows each (no 128-row blocks survive the regrouping), and any matrix whose
rows would cut a scale block. A weight that has taken plain data is never packed after, and
a packed weight that is then given plain or unpackable data is decoded back to the plain
parameter first (``plain``): mixed checkpoints load, packed only where all of a weight is.

Memory: a weight's plain parameter is dropped (a meta placeholder takes its place) when it is
packed, and created on the model's device only when plain data comes for it. A model whose
config declares quantization (``quantization_config``) is built with these matrices on the
meta device (the model's constructor, then ``materialize`` for the rest), so loading an FP8
release never allocates their full-precision copies: the peak is the packed model plus the
matrices it dequantizes. An undeclared one is built whole, each matrix's plain storage freed
as it is packed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from codeagent.backend.packed_weights import PackedExperts, PackedWeight
from codeagent.backend.quant import FP8_BLOCK, format_of, stored_scale

Packed = PackedWeight | PackedExperts


def may_pack(attr: str, param: torch.Tensor) -> bool:
    """The parameters a release may fill packed: experts' [E, N, K] and ``Linear`` weights."""
    return param.dim() == 3 or (param.dim() == 2 and attr == "weight")


def materialize(model: nn.Module, device: torch.device) -> None:
    """Every parameter of a model built on the meta device allocated on ``device``, but those
    ``may_pack`` (they stay meta until loading fills them, packed or plain)."""
    for module in model.modules():
        for attr, param in list(module.named_parameters(recurse=False)):
            if not may_pack(attr, param):
                setattr(module, attr, _parameter(param.shape, param.dtype, device))


@dataclass(slots=True)
class Slot:
    module: nn.Module
    attr: str
    name: str  # the parameter's name in the model
    shape: tuple[int, ...]
    dtype: torch.dtype
    param: nn.Parameter  # plain storage, or a meta placeholder while there is none
    packed: Packed | None = None


class Keeper:
    """The model's matrices that may be kept packed, found by the identity of what the model
    holds for each now (its parameter, plain or a meta placeholder, or the packed storage that
    took its place: only current objects are keys, so a freed one's identity is never reused)."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.device = device
        self.slots: dict[int, Slot] = {}
        self.plain_started: set[int] = set()  # slots that took plain data: never packed
        for prefix, module in model.named_modules():
            for attr, param in module.named_parameters(recurse=False):
                if may_pack(attr, param):
                    name = f"{prefix}.{attr}" if prefix else attr
                    self.slots[id(param)] = Slot(module, attr, name, tuple(param.shape), param.dtype, param)

    def keep(self, target: Any, index: Any, tensor: torch.Tensor, scale: torch.Tensor) -> bool:
        """Store the whole quantized ``tensor`` (with ``scale``) as ``target[index]`` packed; False
        (nothing changed) where the storage cannot hold it exactly."""
        slot = self.slots.get(id(target))
        if slot is None or id(slot) in self.plain_started:
            return False
        if len(slot.shape) == 3:
            return self._expert(slot, index, tensor, scale)
        return self._rows(slot, index, tensor, scale)

    def plain(self, target: Any) -> Any:
        """The plain parameter to copy data into: created on the device if there is none, a
        packed weight decoded into it first."""
        slot = self.slots.get(id(target))
        if slot is None:
            return target
        self.plain_started.add(id(slot))
        if slot.param.is_meta:
            self._set(slot, _parameter(slot.shape, slot.dtype, self.device))
        if slot.packed is not None:
            with torch.no_grad():
                slot.param.copy_(_decoded(slot.packed, slot.dtype))
            slot.packed = None
        return slot.param

    def key(self, target: Any) -> int:
        """The identity ``load`` counts filled elements by: the slot's, for the matrices here."""
        slot = self.slots.get(id(target))
        return id(target) if slot is None else id(slot)

    def drop(self, target: Any) -> None:
        """Forget ``target``'s slot (a head tied to the embedding after all)."""
        slot = self.slots.get(id(target))
        self.slots = {k: s for k, s in self.slots.items() if s is not slot}

    def missing(self, filled: dict[int, int]) -> list[str]:
        """Names of the matrices here not wholly filled."""
        slots = {id(s): s for s in self.slots.values()}
        return [s.name for k, s in slots.items() if filled.get(k, 0) < torch.Size(s.shape).numel()]

    def holds(self, param: Any) -> bool:
        return id(param) in self.slots

    def _expert(self, slot: Slot, index: Any, tensor: torch.Tensor, scale: torch.Tensor) -> bool:
        if isinstance(index, int):
            expert, rows = index, slice(None)
        elif isinstance(index, tuple) and len(index) == 2 and isinstance(index[1], slice):
            expert, rows = index
        else:
            return False  # the fused spelling of all experts at once: dequantized
        if slot.packed is None:
            try:
                self._pack(slot, PackedExperts.empty(slot.shape, tensor, scale, self.device))
            except ValueError:
                return False
        assert isinstance(slot.packed, PackedExperts)
        try:
            slot.packed.fill(expert, rows, tensor, scale)
        except ValueError:  # another format or scale kind, or a wrong shape: the plain path says which
            return False
        return True

    def _rows(self, slot: Slot, index: Any, tensor: torch.Tensor, scale: torch.Tensor) -> bool:
        total, width = slot.shape
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
            codes = torch.empty(total, width, dtype=torch.float8_e4m3fn, device=self.device)
            shape = (-(-total // FP8_BLOCK), blocks[1])
            scale_storage = torch.empty(shape, dtype=scales.dtype, device=self.device)
            self._pack(slot, PackedWeight(codes, scale_storage, "fp8"))
        assert isinstance(slot.packed, PackedWeight)
        if slot.packed.scale.dtype != scales.dtype:
            return False
        first = start // FP8_BLOCK
        slot.packed.weight[start:stop].copy_(tensor)
        slot.packed.scale[first : first + blocks[0]].copy_(scales)
        return True

    def _pack(self, slot: Slot, packed: Packed) -> None:
        """``packed`` takes the weight's place; its plain storage, if any, is let go."""
        slot.param = _parameter(slot.shape, slot.dtype, torch.device("meta"))
        slot.packed = packed
        self._set(slot, packed)

    def _set(self, slot: Slot, value: Any) -> None:
        """``value`` as the module's attribute (a parameter registered, anything else plain)."""
        self.slots.pop(id(getattr(slot.module, slot.attr)), None)
        if isinstance(value, nn.Parameter):
            slot.param = value
        self.slots[id(value)] = slot
        delattr(slot.module, slot.attr)  # a parameter: unregistered before a plain attribute takes its name
        setattr(slot.module, slot.attr, value)


def _parameter(shape: Any, dtype: torch.dtype, device: torch.device) -> nn.Parameter:
    return nn.Parameter(torch.empty(tuple(shape), dtype=dtype, device=device), requires_grad=False)


def _decoded(packed: Packed, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(packed, PackedWeight):
        return packed.dequantize(dtype)
    return torch.stack([packed.expert(e, dtype) for e in range(packed.shape[0])])
