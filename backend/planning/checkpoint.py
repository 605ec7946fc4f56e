"""What a checkpoint stores, tensor by tensor: read from its safetensors headers, or estimated
from ``config.json`` the way the release lays its weights out.

A ``Stored`` entry is one checkpoint tensor, or ``count`` identical ones (a layer's routed
experts), in the format it is stored in: ``bf16``, ``f16``, ``f32``, ``i64``/``i32``,
``fp8`` (e4m3 with 128x128 block scales) or ``fp4`` (e2m1, two a byte, one scale per 32
inputs); a quantized weight's bytes include its scales (``scale_bytes`` of them).

``from_headers(folder)`` is exact: every tensor's dtype, shape and byte range from the
headers (``catalog.header``), each ``X.scale`` / ``X.weight_scale_inv`` paired with its
``X.weight``. ``estimated(raw, config)`` spells the tensors from the configuration:

- Qwen3-MoE: every matrix, norm and expert in the config's ``torch_dtype``; with an FP8
  ``quantization_config`` (the ``-FP8`` releases) the projections and experts are FP8 with
  float32 block scales, except ``modules_to_not_convert`` (the LM head, routers, norms).
- Qwen3-Next / Qwen3.5-MoE, in the config's dtype (FP8 as for Qwen3-MoE when quantized): per
  DeltaNet layer the input projections (Qwen3-Next's fused ``in_proj_qkvz`` / ``in_proj_ba``;
  a Qwen3.5 release's, one with a ``text_config``, separate ``in_proj_qkv`` / ``_z`` / ``_b`` /
  ``_a`` under ``model.language_model.``: the same bytes), the depthwise conv [C, 1, K],
  ``dt_bias``, ``A_log`` (float32: an assumption), the gated norm and ``out_proj``; per attention
  layer ``q_proj`` with its gate rows (2 x heads x head dim), ``k_proj``, ``v_proj``,
  ``o_proj`` and the q/k norms; per sparse layer the router, the routed experts, the shared
  expert and its one-row gate. Not spelled: the MTP head and a release's vision tower (the
  runtime skips both; their download bytes are missing from the estimate).
- DeepSeek-V4, as the release stores it: attention's ``wq_a``, ``wq_b``, ``wkv``, ``wo_a``,
  ``wo_b``, the indexer's ``wq_b`` and the shared expert in FP8 with UE8M0 block scales;
  routed experts in FP4 (``expert_dtype: fp4``; FP8 when a quantized config names no
  expert dtype); mHC parameters, attention sinks, the compressors' slot biases and router
  biases in float32; hash-routing tables int64; the rest (embeddings, head, norms, routers,
  compressor projections, indexer weights) in the config's dtype. The MTP layers (entries
  of ``compress_ratios`` past the last layer) are spelled as one more decoder layer each
  plus their two input projections: approximate, and skipped at load anyway.

Limits: an estimate assumes the layout above; a checkpoint that stores otherwise is exact
only through its headers (``--model DIR``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codeagent.backend.catalog import header
from codeagent.backend.loader import LoadError, shard_files
from codeagent.backend.models.deepseek_v4.weights import weight_shapes
from codeagent.backend.planning import PlanError
from codeagent.backend.planning.families import QWEN3, QWEN3_NEXT, family
from codeagent.backend.quant import FP4_GROUP, FP8_BLOCK, weight_key_of

FORMATS = {
    "BF16": "bf16",
    "F16": "f16",
    "F32": "f32",
    "F64": "f64",
    "I64": "i64",
    "I32": "i32",
    "BOOL": "bool",
}
QUANTIZED = {"F8_E4M3": "fp8", "I8": "fp4", "U8": "fp4", "F4": "fp4", "F8_E8M0": "e8m0"}
CONFIG_DTYPES = {"bfloat16": "bf16", "float16": "f16", "float32": "f32"}
V4_FP8 = (
    "attn.wq_a.",
    "attn.wq_b.",
    "attn.wkv.",
    "attn.wo_a.",
    "attn.wo_b.",
    "indexer.wq_b.",
    "shared_experts.",
    ".e_proj.",
    ".h_proj.",
)
V4_F32 = ("hc_", "attn_sink", ".ape", "gate.bias")


@dataclass(frozen=True, slots=True)
class Stored:
    name: str  # checkpoint name (a ``*`` for the expert index when ``count`` > 1)
    shape: tuple[int, ...]  # as stored (FP4: [out, in/2])
    format: str
    nbytes: int  # all ``count`` tensors, scales included
    count: int = 1
    scale_bytes: int = 0
    scale_itemsize: int = 1  # 1 for UE8M0 scales, 4 for float32 ones

    @property
    def logical(self) -> tuple[int, int]:
        """(rows, columns) of one quantized matrix as it computes (FP4 columns unpacked)."""
        rows, cols = self.shape[-2:]
        return rows, cols * (2 if self.format == "fp4" else 1)


def from_headers(folder: Path) -> list[Stored]:
    """Every tensor of the checkpoint in ``folder``, exactly as its shards store it."""
    tensors: dict[str, dict[str, Any]] = {}
    try:
        for shard in shard_files(folder):
            tensors.update(header(shard))
    except (LoadError, OSError, ValueError, struct.error) as err:
        raise PlanError(f"cannot read the safetensors headers in {folder}: {err}") from None
    scales = {weight_key_of(name): name for name in tensors if weight_key_of(name) in tensors}
    out = []
    for name, entry in tensors.items():
        if name in scales.values():
            continue
        nbytes = entry["data_offsets"][1] - entry["data_offsets"][0]
        scale = tensors.get(scales.get(name, ""))
        fmt = QUANTIZED.get(entry["dtype"]) if scale is not None else None
        if fmt is None or scale is None:
            out.append(
                Stored(
                    name, tuple(entry["shape"]), FORMATS.get(entry["dtype"], entry["dtype"].lower()), nbytes
                )
            )
            continue
        extra = scale["data_offsets"][1] - scale["data_offsets"][0]
        itemsize = 4 if scale["dtype"] == "F32" else 1
        out.append(Stored(name, tuple(entry["shape"]), fmt, nbytes + extra, 1, extra, itemsize))
    return out


def estimated(raw: dict[str, Any], config: Any) -> list[Stored]:
    """The tensors a release checkpoint of this configuration stores (see the module docstring)."""
    architecture = family(config)
    if architecture == QWEN3:
        return _qwen3(raw, config)
    if architecture == QWEN3_NEXT:
        return _qwen3_next(raw, config)
    return _deepseek_v4(raw, config)


def _plain(name: str, shape: tuple[int, ...], fmt: str, count: int = 1) -> Stored:
    itemsize = {"bf16": 2, "f16": 2, "f32": 4, "i64": 8, "i32": 4}[fmt]
    return Stored(name, shape, fmt, math.prod(shape) * itemsize * count, count)


def _fp8(name: str, rows: int, cols: int, scale_itemsize: int, count: int = 1) -> Stored:
    scale = math.ceil(rows / FP8_BLOCK) * math.ceil(cols / FP8_BLOCK) * scale_itemsize * count
    return Stored(name, (rows, cols), "fp8", rows * cols * count + scale, count, scale, scale_itemsize)


def _fp4(name: str, rows: int, cols: int, count: int = 1) -> Stored:
    scale = rows * (cols // FP4_GROUP) * count
    return Stored(name, (rows, cols // 2), "fp4", rows * cols // 2 * count + scale, count, scale, 1)


def _float_format(raw: dict[str, Any]) -> str:
    return CONFIG_DTYPES.get(str(raw.get("torch_dtype") or raw.get("dtype") or "bfloat16"), "bf16")


Matrix = Callable[..., Stored]


def _matrices(raw: dict[str, Any], fmt: str) -> Matrix:
    """How a Qwen release stores a matrix: ``fmt``, or FP8 with float32 block scales when its
    ``quantization_config`` says so (but for ``modules_to_not_convert``)."""
    quant = raw.get("quantization_config") or {}
    fp8 = quant.get("quant_method") == "fp8"
    skip = list(quant.get("modules_to_not_convert") or ["lm_head"])

    def matrix(name: str, rows: int, cols: int, count: int = 1) -> Stored:
        if fp8 and not any(name == m or name.startswith(m + ".") for m in skip):
            return _fp8(name, rows, cols, 4, count)  # float32 weight_scale_inv
        return _plain(name, (rows, cols), fmt, count)

    return matrix


def _qwen3(raw: dict[str, Any], c: Any) -> list[Stored]:
    fmt = _float_format(raw)
    matrix = _matrices(raw, fmt)

    h, d, heads, kv = c.hidden_size, c.head_dim, c.num_attention_heads, c.num_key_value_heads
    out = [
        _plain("model.embed_tokens.weight", (c.vocab_size, h), fmt),
        _plain("model.norm.weight", (h,), fmt),
    ]
    if not c.tie_word_embeddings:
        out.append(matrix("lm_head.weight", c.vocab_size, h))
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        out += [
            _plain(p + n, (h,), fmt) for n in ("input_layernorm.weight", "post_attention_layernorm.weight")
        ]
        out += [_plain(p + f"self_attn.{n}_norm.weight", (d,), fmt) for n in "qk"]
        out += [
            matrix(p + "self_attn.q_proj.weight", heads * d, h),
            matrix(p + "self_attn.o_proj.weight", h, heads * d),
        ]
        out += [matrix(p + f"self_attn.{n}_proj.weight", kv * d, h) for n in "kv"]
        if c.is_sparse(i):
            e, inter = c.num_experts, c.moe_intermediate_size
            out.append(_plain(p + "mlp.gate.weight", (e, h), fmt))
            out += [matrix(p + f"mlp.experts.*.{n}_proj.weight", inter, h, e) for n in ("gate", "up")]
            out.append(matrix(p + "mlp.experts.*.down_proj.weight", h, inter, e))
        else:
            inter = c.intermediate_size
            out += [matrix(p + f"mlp.{n}_proj.weight", inter, h) for n in ("gate", "up")]
            out.append(matrix(p + "mlp.down_proj.weight", h, inter))
    return out


def _qwen3_next(raw: dict[str, Any], c: Any) -> list[Stored]:
    text = raw.get("text_config") or {}
    fmt = _float_format(text if ("torch_dtype" in text or "dtype" in text) else raw)
    matrix = _matrices(text if "quantization_config" in text else raw, fmt)
    release = bool(text)  # a Qwen3.5 ForConditionalGeneration release: its spelling
    top = "model.language_model." if release else "model."
    h, d, heads, kv = c.hidden_size, c.head_dim, c.num_attention_heads, c.num_key_value_heads
    kh, vh, dk, dv = (
        c.linear_num_key_heads,
        c.linear_num_value_heads,
        c.linear_key_head_dim,
        c.linear_value_head_dim,
    )
    channels = 2 * kh * dk + vh * dv
    out = [
        _plain(top + "embed_tokens.weight", (c.vocab_size, h), fmt),
        _plain(top + "norm.weight", (h,), fmt),
    ]
    if not c.tie_word_embeddings:
        out.append(matrix("lm_head.weight", c.vocab_size, h))
    for i, kind in enumerate(c.layer_types):
        p = f"{top}layers.{i}."
        out += [
            _plain(p + n, (h,), fmt) for n in ("input_layernorm.weight", "post_attention_layernorm.weight")
        ]
        if kind == "full_attention":
            a = p + "self_attn."
            out += [
                matrix(a + "q_proj.weight", 2 * heads * d, h),  # queries and their gates
                matrix(a + "k_proj.weight", kv * d, h),
                matrix(a + "v_proj.weight", kv * d, h),
                matrix(a + "o_proj.weight", h, heads * d),
            ]
            out += [_plain(a + f"{n}_norm.weight", (d,), fmt) for n in "qk"]
        else:
            a = p + "linear_attn."
            if release:
                out += [
                    matrix(a + "in_proj_qkv.weight", channels, h),
                    matrix(a + "in_proj_z.weight", vh * dv, h),
                    matrix(a + "in_proj_b.weight", vh, h),
                    matrix(a + "in_proj_a.weight", vh, h),
                ]
            else:
                out += [
                    matrix(a + "in_proj_qkvz.weight", channels + vh * dv, h),
                    matrix(a + "in_proj_ba.weight", 2 * vh, h),
                ]
            out += [
                _plain(a + "conv1d.weight", (channels, 1, c.linear_conv_kernel_dim), fmt),
                _plain(a + "dt_bias", (vh,), fmt),
                _plain(a + "A_log", (vh,), "f32"),
                _plain(a + "norm.weight", (dv,), fmt),
                matrix(a + "out_proj.weight", h, vh * dv),
            ]
        m = p + "mlp."
        if c.is_sparse(i):
            e, inter, shared = c.num_experts, c.moe_intermediate_size, c.shared_expert_intermediate_size
            out.append(_plain(m + "gate.weight", (e, h), fmt))
            out += [matrix(m + f"experts.*.{n}_proj.weight", inter, h, e) for n in ("gate", "up")]
            out.append(matrix(m + "experts.*.down_proj.weight", h, inter, e))
            if shared:
                out += [matrix(m + f"shared_expert.{n}_proj.weight", shared, h) for n in ("gate", "up")]
                out.append(matrix(m + "shared_expert.down_proj.weight", h, shared))
                out.append(_plain(m + "shared_expert_gate.weight", (1, h), fmt))
        else:
            inter = c.intermediate_size
            out += [matrix(m + f"{n}_proj.weight", inter, h) for n in ("gate", "up")]
            out.append(matrix(m + "down_proj.weight", h, inter))
    return out


def _deepseek_v4(raw: dict[str, Any], c: Any) -> list[Stored]:
    fmt, quant = _float_format(raw), raw.get("quantization_config")
    experts = raw.get("expert_dtype") or ("fp8" if quant else None)
    scale_itemsize = 1 if (quant or {}).get("scale_fmt", "ue8m0") == "ue8m0" else 4
    shapes = weight_shapes(c)
    out = [
        _v4_tensor(n, s, fmt, quant is not None, scale_itemsize) for n, s in shapes.items() if not _fused(n)
    ]
    for i in range(c.num_hidden_layers):
        out += _v4_experts(f"layers.{i}.", c, experts, fmt, scale_itemsize)
    ratios = list(raw.get("compress_ratios") or [])
    for j in range(max(0, len(ratios) - c.num_hidden_layers)):
        out += _v4_mtp(j, c, shapes, fmt, quant is not None, experts, scale_itemsize)
    return out


def _fused(name: str) -> bool:
    return name.endswith(("ffn.w13", "ffn.w2"))


def _v4_tensor(name: str, shape: tuple[int, ...], fmt: str, quantized: bool, scale_itemsize: int) -> Stored:
    if name.endswith("tid2eid"):
        return _plain(name, shape, "i64")
    if any(key in name for key in V4_F32):
        return _plain(name, shape, "f32")
    if quantized and len(shape) == 2 and any(key in name for key in V4_FP8):
        return _fp8(name, *shape, scale_itemsize)
    return _plain(name, shape, fmt)


def _v4_experts(prefix: str, c: Any, experts: str | None, fmt: str, scale: int) -> list[Stored]:
    h, inter, e = c.hidden_size, c.moe_intermediate_size, c.n_routed_experts
    shapes = {"w1": (inter, h), "w3": (inter, h), "w2": (h, inter)}
    out = []
    for role, (rows, cols) in shapes.items():
        name = f"{prefix}ffn.experts.*.{role}.weight"
        if experts == "fp4":
            out.append(_fp4(name, rows, cols, e))
        elif experts == "fp8":
            out.append(_fp8(name, rows, cols, scale, e))
        else:
            out.append(_plain(name, (rows, cols), fmt, e))
    return out


def _v4_mtp(
    j: int,
    c: Any,
    shapes: dict[str, tuple[int, ...]],
    fmt: str,
    quantized: bool,
    experts: str | None,
    scale: int,
) -> list[Stored]:
    """One MTP layer, approximated by the last decoder layer's tensors (a learned router in place
    of a hash table) plus its input projections, norms and head mixer."""
    last, h, n = f"layers.{c.num_hidden_layers - 1}.", c.hidden_size, c.hc_mult
    prefix = f"mtp.{j}."
    out = [
        _v4_tensor(prefix + name[len(last) :], shape, fmt, quantized, scale)
        for name, shape in shapes.items()
        if name.startswith(last) and not _fused(name) and not name.endswith("tid2eid")
    ]
    out += _v4_experts(prefix, c, experts, fmt, scale)
    out += [_v4_tensor(prefix + f"{p}_proj.weight", (h, h), fmt, quantized, scale) for p in ("e", "h")]
    out += [_plain(prefix + f"{p}.weight", (h,), fmt) for p in ("enorm", "hnorm", "norm")]
    out += [_plain(prefix + "hc_head_fn", (n, n * h), "f32"), _plain(prefix + "hc_head_base", (n,), "f32")]
    return [*out, _plain(prefix + "hc_head_scale", (1,), "f32")]
