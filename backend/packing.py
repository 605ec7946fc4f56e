"""Opt-in load-time conversion of a loaded full-precision model's weights to packed formats.

``pack(model, variant)`` quantizes a bf16 or float32 model in place, weight by weight, with
what the layers offer (``Linear.pack`` / ``packed_weights.PackedWeight.quantize`` for matrices,
``packed_weights.PackedExperts.quantize`` for a layer's routed experts), so the engine then runs the
native packed kernels where they take the batch (``kernels/native_packed``) and decodes for
the call elsewhere. Variants (``VARIANTS``):

- ``fp8``: dense projections, routed experts and the LM head in FP8 e4m3 with 128 x 128
  block scales (DeepSeek's and Qwen's FP8 layout);
- ``fp4``: routed experts in FP4 e2m1 with a UE8M0 scale per 32 inputs (DeepSeek-V4's
  experts), dense projections in FP8, the LM head in INT6 (``quant_int6``: 6.5 bits a
  weight, a float16 scale per 32 inputs; 0.81 of FP8's bytes, and on Gaussian rows 0.83 of
  its error, on heavy-tailed ones 1.13). In a shallow model the head is most of a decode
  step's bytes (the bench model's: 72% in FP8), so this is where a 4-bit variant's bytes
  go; FP4 there costs too much accuracy (``docs/bench/llama-cpp.md``). A head whose width
  is not a multiple of 128 stays in FP8.

What each architecture converts (``PACKERS``, by the model's class name):

- Qwen3-MoE: attention's ``qkv`` and ``o``, the dense MLP layers' ``w13`` / ``w2``, the
  routed experts ``w13`` / ``w2``, the LM head;
- Qwen3-Next / Qwen3.5-MoE: the full-attention layers' ``qkv`` and ``o``, the DeltaNet layers'
  ``in_proj`` and ``out_proj``, the dense MLP layers' ``w13`` / ``w2``, the routed experts, the
  shared expert's ``w13`` / ``w2``, the LM head (the conv, ``A_log`` / ``dt_bias``, the
  routers and ``shared_gate`` stay as loaded);
- DeepSeek-V4: attention's ``wq_a``, ``wq_b``, ``wkv``, ``wo_a``, ``wo_b`` and the indexer's
  ``wq_b`` (the matrices the release ships in FP8), the routed experts, the head. Its flat
  weight dict is rewritten and each layer re-binds its part at once, so a layer's
  full-precision copy is freed before the next is converted.

Kept as loaded: embeddings, norms, routers, and DeepSeek-V4's mHC, compressors (float32),
the indexer's ``weights_proj`` and the shared expert (``models/deepseek_v4/moe.py``
multiplies it as plain tensors). ``pack`` returns a ``Converted`` per weight: its bytes
before and after, so callers can count what a step reads.

Refused with a ``PackError`` that says why: an unknown variant or architecture, a model
whose experts are split between homes (``--cpu-experts``), a model split across ranks, a
model already holding packed weights, weights neither bf16 nor float32; and
``check_checkpoint`` refuses a checkpoint that is quantized or stores other float formats
(only bf16/float32 checkpoints are converted: re-quantizing a dequantized release would
round twice).

Limits: one process (each rank would have to pack its own share). Everything above is
checked before a weight changes, except a shape a format cannot hold (FP4: inputs in groups
of 32), found midway: that model is left partly converted, and the runtime's load fails.
The conversion costs accuracy (``tests/backend/test_packing.py`` bounds the logit error,
``codeagent bench packing`` measures it); peak memory while converting is the
full-precision model plus one layer's packed copy (the head's, at the end).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch

from codeagent.backend.catalog import header
from codeagent.backend.layers.linear import Linear
from codeagent.backend.loader import LoadError, read_config, shard_files
from codeagent.backend.models.deepseek_v4.weights import scope
from codeagent.backend.packed_weights import PackedExperts, PackedWeight
from codeagent.backend.quant_int6 import INT6_BLOCK


class Variant(NamedTuple):
    dense: str  # dense projections
    experts: str  # routed experts
    head: str  # the LM head


VARIANTS = {"fp8": Variant("fp8", "fp8", "fp8"), "fp4": Variant("fp8", "fp4", "int6")}
FULL_PRECISION = (torch.bfloat16, torch.float32)
STORED_FLOATS = ("BF16", "F32")  # safetensors' names of the floats a checkpoint may store
INTEGERS = ("I64", "I32", "I16", "BOOL")  # hash-routing tables and the like: never packed
V4_DENSE = re.compile(r"^layers\.\d+\.attn\.(wq_a|wq_b|wkv|wo_a|wo_b|indexer\.wq_b)\.weight$")
V4_ROUTED = re.compile(r"^layers\.\d+\.ffn\.(w13|w2)$")


class PackError(ValueError):
    """A model or checkpoint that cannot be packed, and why."""


@dataclass(frozen=True, slots=True)
class Converted:
    kind: str  # "dense" (read whole every step) or "expert" (routed: a share read)
    before: int  # bytes in the load dtype
    after: int  # bytes packed, scales included
    name: str  # which weight: a module path (Qwen3-MoE) or a key of the flat weights (DeepSeek-V4)
    format: str  # what it was converted to: fp8, fp4 or int6


HEADS = ("lm_head", "head.weight")  # the LM head's name in ``Converted`` (a module path, V4's key)


def head_format(converted: list[Converted]) -> str:
    """The format ``pack`` gave the LM head: its variant's, or FP8 where INT6 cannot hold it."""
    return next(c.format for c in converted if c.name in HEADS)


def pack(model: torch.nn.Module, variant: str) -> list[Converted]:
    """Quantize ``model`` (loaded in bf16 or float32, one process) in place as ``variant`` says."""
    if variant not in VARIANTS:
        raise PackError(f"unknown packing {variant!r}; expected one of {', '.join(VARIANTS)}")
    name = type(model).__name__
    packer = PACKERS.get(name)
    if packer is None:
        raise PackError(f"packing is not available for {name}; it is for {', '.join(PACKERS)}")
    group = getattr(model, "group", None)
    if group is not None and group.size > 1:
        raise PackError("packing runs in one process; this model is one rank's share of a split model")
    try:
        return packer(model, VARIANTS[variant])
    except PackError:
        raise
    except ValueError as err:  # a shape a format cannot hold (FP4: inputs in groups of 32)
        raise PackError(f"{name}: {err}") from err


def check_checkpoint(folder: Path) -> None:
    """``PackError`` unless every float tensor in ``folder`` is stored in bf16 or float32 and its
    config declares no quantization (from the headers: no weights are read)."""
    quantization = read_config(folder).get("quantization_config")
    if quantization:
        method = quantization.get("quant_method") or quantization.get("fmt") or "quantized"
        raise PackError(
            f"{folder} is a quantized checkpoint ({method}); --pack converts bf16 or float32 ones only"
        )
    try:
        entries = {name: e for shard in shard_files(folder) for name, e in header(shard).items()}
    except (LoadError, OSError, ValueError, struct.error) as err:
        raise PackError(f"cannot read the safetensors headers in {folder}: {err}") from None
    other = sorted({e["dtype"] for e in entries.values() if e["dtype"] not in STORED_FLOATS + INTEGERS})
    if other:
        raise PackError(
            f"{folder} stores {', '.join(other)} tensors; --pack converts bf16 or float32 checkpoints only"
        )


def _check_dtype(name: str, dtype: torch.dtype) -> None:
    if dtype not in FULL_PRECISION:
        raise PackError(f"{name} is loaded in {dtype}; packing converts bfloat16 or float32 weights only")


def _already_packed(name: str) -> PackError:
    return PackError(f"{name} already holds packed weights (packed before, or as its checkpoint ships them)")


def _qwen3_moe(model: Any, variant: Variant) -> list[Converted]:
    """Attention, dense MLPs, routed experts and the head of a Qwen3-MoE."""
    _check_qwen3_moe(model)
    out: list[Converted] = []
    for index, layer in enumerate(model.layers):
        prefix, mlp = f"layers.{index}.", layer.mlp
        out += [
            _pack_linear(f"{prefix}attn.{n}", getattr(layer.attn, n), variant.dense) for n in ("qkv", "o")
        ]
        for n in ("w13", "w2"):
            if isinstance(getattr(mlp, n), Linear):  # a dense MLP layer
                out.append(_pack_linear(f"{prefix}mlp.{n}", getattr(mlp, n), variant.dense))
                continue
            experts = getattr(mlp, n)
            packed = PackedExperts.quantize(experts.detach(), variant.experts)
            out.append(Converted("expert", experts.nbytes, packed.nbytes, f"{prefix}mlp.{n}", packed.format))
            delattr(mlp, n)  # a parameter: unregistered before a plain attribute takes its name
            setattr(mlp, n, packed)
    out.append(_pack_linear("lm_head", model.lm_head, _head_format(variant, model.lm_head.weight)))
    return out


def _qwen3_next(model: Any, variant: Variant) -> list[Converted]:
    """Both mixers' projections, dense MLPs, routed and shared experts and the head of a
    Qwen3-Next (``models/qwen3_next``)."""
    _check_dtype(type(model).__name__, model.embed.dtype)
    if any(not isinstance(linear.weight, torch.Tensor) for _, linear in _next_linears(model)) or any(
        not isinstance(w, torch.Tensor) for _, w in _next_experts(model)
    ):
        raise _already_packed(type(model).__name__)
    out = [
        _pack_linear(
            name, linear, _head_format(variant, linear.weight) if name == "lm_head" else variant.dense
        )
        for name, linear in _next_linears(model)
    ]
    for name, experts in _next_experts(model):
        packed = PackedExperts.quantize(experts.detach(), variant.experts)
        out.append(Converted("expert", experts.nbytes, packed.nbytes, name, packed.format))
        owner, attr = name.rsplit(".", 1)
        module = model.get_submodule(owner)
        delattr(module, attr)  # a parameter: unregistered before a plain attribute takes its name
        setattr(module, attr, packed)
    return out


def _next_linears(model: Any) -> list[tuple[str, Linear]]:
    """(module path, Linear) of every matrix a Qwen3-Next converts, the head last."""
    names = ("qkv", "o", "in_proj", "out_proj", "w13", "w2")
    found = [
        (path, module)
        for path, module in model.named_modules()
        if isinstance(module, Linear) and path.rsplit(".", 1)[-1] in names
    ]
    return [*found, ("lm_head", model.lm_head)]


def _next_experts(model: Any) -> list[tuple[str, Any]]:
    """(path, storage) of every sparse layer's routed ``w13`` and ``w2``."""
    return [
        (f"layers.{i}.mlp.{n}", getattr(layer.mlp, n))
        for i, layer in enumerate(model.layers)
        for n in ("w13", "w2")
        if not isinstance(getattr(layer.mlp, n), Linear)
    ]


def _check_qwen3_moe(model: Any) -> None:
    """Refuse before anything changes: experts in two homes, packed weights, another dtype."""
    name = type(model).__name__
    _check_dtype(name, model.embed.dtype)
    weights = [model.lm_head.weight]
    for layer in model.layers:
        if getattr(layer.mlp, "homes", None) is not None:
            raise PackError("cannot pack experts split between homes (--cpu-experts); drop one of the two")
        weights += [layer.attn.qkv.weight, layer.attn.o.weight]
        weights += [w.weight if isinstance(w, Linear) else w for w in (layer.mlp.w13, layer.mlp.w2)]
    if any(not isinstance(w, torch.Tensor) for w in weights):
        raise _already_packed(name)


def _head_format(variant: Variant, weight: torch.Tensor) -> str:
    """The variant's head format, or its dense one where INT6 cannot hold the head's width."""
    if variant.head == "int6" and weight.shape[-1] % INT6_BLOCK:
        return variant.dense
    return variant.head


def _pack_linear(name: str, linear: Linear, kind: str) -> Converted:
    before = linear.weight.nbytes
    linear.pack(kind)
    return Converted("dense", before, linear.weight.nbytes, name, kind)


def _deepseek_v4(model: Any, variant: Variant) -> list[Converted]:
    """Attention's (and the indexer's) FP8 matrices, routed experts and the head of a DeepSeek-V4,
    in its flat weight dict (``models/deepseek_v4/weights.py``), each layer re-bound as it is done."""
    name, w = type(model).__name__, model.w
    _check_dtype(name, model.dtype)
    if any(getattr(layer.ffn, "homes", None) is not None for layer in model.layers):
        raise PackError("cannot pack experts split between homes (--cpu-experts); drop one of the two")
    if any(isinstance(value, PackedExperts | PackedWeight) for value in w.values()):
        raise _already_packed(name)
    out: list[Converted] = []
    for index, layer in enumerate(model.layers):
        prefix = f"layers.{index}."
        for key in [k for k in w if k.startswith(prefix)]:
            if V4_DENSE.match(key):
                out.append(_pack_entry(w, key, "dense", variant.dense, PackedWeight.quantize))
            elif V4_ROUTED.match(key):
                out.append(_pack_entry(w, key, "expert", variant.experts, PackedExperts.quantize))
        layer.bind(scope(w, prefix))  # the layer's full-precision copies are freed here
    head = _head_format(variant, w["head.weight"])
    out.append(_pack_entry(w, "head.weight", "dense", head, PackedWeight.quantize))
    model._bind()  # the head, and everything else as it already is
    return out


def _pack_entry(
    w: dict[str, Any], key: str, kind: str, fmt: str, quantize: Callable[[torch.Tensor, str], Any]
) -> Converted:
    before = w[key]
    w[key] = quantize(before, fmt)
    return Converted(kind, before.nbytes, w[key].nbytes, key, fmt)


PACKERS: dict[str, Callable[[Any, Variant], list[Converted]]] = {
    "Qwen3MoeForCausalLM": _qwen3_moe,
    "DeepseekV4ForCausalLM": _deepseek_v4,
    "Qwen3NextForCausalLM": _qwen3_next,
    "Qwen3_5MoeForCausalLM": _qwen3_next,
}
