"""Native CPU kernels over packed weights (``native_packed.c``): decode-sized products and whole
MoE layers that read FP8 e4m3 (128 x 128 block scales) and FP4 e2m1 (a UE8M0 or float scale per
32 inputs) weights as ``backend/quant.py`` keeps them, decoding in registers, never into a
dequantized copy.

- ``linear_fp8`` / ``linear_fp4`` (and ``linear`` for a ``packed_weights.PackedWeight``): x [T, K]
  @ W^T for dense projections and the LM head;
- ``moe_packed``: one MoE layer over ``packed_weights.PackedExperts`` in one call, as ``native.moe``
  does for plain weights (SiLU-gated gate/up, down, the weighted sum over the top k), with
  DeepSeek-V4's clamp (``limit``), its routing weight on the activation (``weight_first``) and a
  float32 output on request;
- ``dequantize`` / ``dequantize_expert``: a weight decoded whole, exactly as ``quant`` decodes
  it, for the products too large for the kernels (a prefill chunk), some ten times faster than
  torch's float8 conversion.

FP4 products have a second route, the default where the build has AVX512-VNNI and -VBMI
(``int8_built``; ``int8()`` / ``CODEAGENT_FP4_INT8=off`` / each call's ``int8``): the activations
quantized to int8 per 32 inputs (per row, once per call; in a MoE layer also each pair's
activation between the projections), the weights mapped exactly to integers (twice e2m1), and
integer dot products (``vpdpbusd``) scaled per group in float32. It differs from the float
route by the activations' rounding (at most 1/254 of a group's largest magnitude an input)
and keeps its batch invariance; native_packed.c's int8 section has the design.

Built and loaded as ``native`` builds ``native.c`` (same flags, cache folder, OpenMP runtime), by
``native_packed_lib`` (the library and its switches, re-exported here). Each product has a bound
form (``*_call``: a ``NativeCall`` into a given output) for a decode program.
Numerics: activations float32 or bfloat16, taken as float32, or where the CPU has AVX512-BF16
(``bf16_pairs``) bfloat16 activations with K a multiple of 32 kept in bfloat16 against the
weights decoded to bfloat16 (exact: every e4m3 / e2m1 value, and FP4 tables times power-of-two
scales, are bfloat16 values), multiplied in pairs (``vdpbf16ps``), a MoE layer's activations
between its projections then rounded to bfloat16 as the torch reference's are; every product
accumulated in float32 over a fixed order, so a row's result does not depend on the batch it is
in; outputs rounded once. They differ from the torch references (dequantize, then ``F.linear``
in the activation dtype) only by float32 rounding (in pairs: activations below 2^-126 read as
zero), and in MoE layers by where the references round to bfloat16 in between; the MoE
routing weights multiply each expert's output in float32, or with ``weight_first``
(DeepSeek-V4's reference expert) the activation before the down projection, in float32, the
parts summed unweighted, and with bfloat16 activations gate, up, the weighted activation and
each expert's output rounded to bfloat16 where that reference rounds them (it then differs
from it only by float32 summation order). Limits: at most ``MAX_ROWS`` token rows
(``MAX_PAIRS`` token-expert pairs), K a multiple of 16 (FP8) or 32 (FP4), scales float32 or UE8M0 bytes (FP8 scales times
2^8 must stay finite), e4m3's NaN codes read as +-480. The ``fits_*`` checks send anything else
to the references (``packed_fits.py``, re-exported here: the layers ask ``kernels.packed``);
prefill-sized batches decode the weight for the call (``dequantize``), then run the BLAS.
"""

from __future__ import annotations

import math

import torch

from codeagent.backend.kernels import native, native_int6

# the library and its switches are part of this module's interface (tests, benches, dispatch)
from codeagent.backend.kernels.native_packed_lib import FORMATS as FORMATS
from codeagent.backend.kernels.native_packed_lib import INT8_ENV as INT8_ENV
from codeagent.backend.kernels.native_packed_lib import LIBRARY as LIBRARY
from codeagent.backend.kernels.native_packed_lib import REASONS as _REASONS
from codeagent.backend.kernels.native_packed_lib import SIGNATURES as SIGNATURES
from codeagent.backend.kernels.native_packed_lib import SOURCE as SOURCE
from codeagent.backend.kernels.native_packed_lib import bf16_pairs as bf16_pairs
from codeagent.backend.kernels.native_packed_lib import int8 as int8
from codeagent.backend.kernels.native_packed_lib import int8_asked as int8_asked
from codeagent.backend.kernels.native_packed_lib import int8_built as int8_built
from codeagent.backend.kernels.native_packed_lib import int8_for as _int8_for
from codeagent.backend.kernels.native_packed_lib import lib as _lib
from codeagent.backend.kernels.native_packed_lib import problem as problem
from codeagent.backend.kernels.native_packed_lib import scale_view as _scale
from codeagent.backend.kernels.native_packed_lib import set_int8 as set_int8
from codeagent.backend.kernels.packed_fits import ACTIVATIONS

# the checks are part of this module's interface (the layers ask ``kernels.packed.fits_*``)
from codeagent.backend.kernels.packed_fits import MAX_PAIRS as MAX_PAIRS
from codeagent.backend.kernels.packed_fits import MAX_ROWS as MAX_ROWS
from codeagent.backend.kernels.packed_fits import fits_dequantize as fits_dequantize
from codeagent.backend.kernels.packed_fits import fits_linear as fits_linear
from codeagent.backend.kernels.packed_fits import fits_linear_fp4 as fits_linear_fp4
from codeagent.backend.kernels.packed_fits import fits_linear_fp8 as fits_linear_fp8
from codeagent.backend.kernels.packed_fits import fits_moe_packed as fits_moe_packed
from codeagent.backend.packed_weights import PackedExperts, PackedWeight
from codeagent.backend.quant import FP8_BLOCK


def linear_fp8(
    x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, out_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """x [T, K] @ W^T -> [T, N] in ``out_dtype`` (default x's): W [N, K] float8_e4m3fn with block
    scales [ceil(N/128), ceil(K/128)] (float32, UE8M0 bytes or float8_e8m0fnu)."""
    return _linear(x, weight, scale, "fp8", out_dtype)


def linear_fp4(
    x: torch.Tensor,
    packed: torch.Tensor,
    scale: torch.Tensor,
    out_dtype: torch.dtype | None = None,
    int8: bool | None = None,
) -> torch.Tensor:
    """x [T, K] @ W^T -> [T, N] in ``out_dtype`` (default x's): W packed [N, K/2] (two e2m1 codes
    a byte, the even input in the low nibble) with scales [N, K/32] (float32 or UE8M0). ``int8``:
    x quantized to int8 per 32 inputs and integer products (where built; default ``int8()``)."""
    return _linear(x, packed.view(torch.uint8), scale, "fp4", out_dtype, int8)


def linear(
    x: torch.Tensor, w: PackedWeight, out_dtype: torch.dtype | None = None, int8: bool | None = None
) -> torch.Tensor:
    """x [T, K] @ W^T -> [T, N] for a ``packed_weights.PackedWeight`` (``int8``: FP4 and INT6,
    whose products ``native_int6`` runs; default ``int8()``)."""
    x = x.contiguous()
    out = torch.empty(x.shape[0], w.shape[0], dtype=out_dtype or x.dtype)
    linear_call(x, w, out, int8).run()
    return out


def linear_call(
    x: torch.Tensor, w: PackedWeight, out: torch.Tensor, int8: bool | None = None
) -> native.NativeCall:
    """``linear`` into ``out`` [T, N] (x contiguous), bound."""
    if w.format == "int6":
        route = "int8" if (int8_asked() if int8 is None else int8) else "float"
        return native_int6.linear_call(x, w.weight, w.scale, w.shape[1], out, route)
    return _linear_call(x, w.weight, w.scale, w.format, out, int8)


def _linear(
    x: torch.Tensor,
    codes: torch.Tensor,
    scale: torch.Tensor,
    fmt: str,
    out_dtype: torch.dtype | None,
    int8: bool | None = None,
) -> torch.Tensor:
    x = x.contiguous()
    out = torch.empty(x.shape[0], codes.shape[0], dtype=out_dtype or x.dtype)
    _linear_call(x, codes, scale, fmt, out, int8).run()
    return out


def _linear_call(
    x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor, fmt: str, out: torch.Tensor, int8: bool | None
) -> native.NativeCall:
    t, k = x.shape
    n = codes.shape[0]
    if codes.shape[1] * (2 if fmt == "fp4" else 1) != k:
        raise ValueError(f"linear_{fmt}: x has {k} columns, weight {tuple(codes.shape)}")
    if not x.is_contiguous() or not out.is_contiguous() or out.shape != (t, n):
        raise ValueError(f"linear_{fmt}: x and out [{t}, {n}] must be contiguous")
    scale, u8 = _scale(scale)
    args = (
        t,
        k,
        n,
        x.data_ptr(),
        codes.data_ptr(),
        scale.data_ptr(),
        FORMATS[fmt],
        u8,
        FP8_BLOCK if fmt == "fp8" else 1,
        out.data_ptr(),
        ACTIVATIONS[x.dtype],
        ACTIVATIONS[out.dtype],
        _int8_for(fmt, int8),
        torch.get_num_threads(),
    )
    return native.NativeCall(f"linear_{fmt}", _lib().ca_linear_packed, args, _REASONS, (x, codes, scale, out))


def moe_packed(
    x: torch.Tensor,
    w13: PackedExperts,
    w2: PackedExperts,
    weights: torch.Tensor,
    ids: torch.Tensor,
    limit: float | None = None,
    out_dtype: torch.dtype | None = None,
    weight_first: bool = False,
    int8: bool | None = None,
) -> torch.Tensor:
    """One sparse MoE layer over packed experts: x [T, H]; w13 [E, 2I, H] (gate rows, then up
    rows); w2 [E, H, I]; weights, ids [T, k] -> [T, H] in ``out_dtype`` (default x's). Each
    expert is down(silu(gate) * up), with gate clamped above at ``limit`` and up to
    [-limit, limit] when a limit is given (DeepSeek-V4's SwiGLU), weighted after the down
    projection, or with ``weight_first`` before it as DeepSeek-V4's reference expert does
    (silu(gate) * up * weight in float32; gate, up, that product and the expert's output
    rounded to x's dtype where the reference rounds them). Where ``bf16_pairs()`` and x is
    bfloat16, the activation between the projections is rounded to bfloat16 (as the references
    of a bfloat16 model hold it) and multiplied in pairs. ``int8`` (FP4, where built; default
    ``int8()``): x and each pair's activation between the projections (rounded to bfloat16 for
    bfloat16 x) quantized to int8 per 32 inputs, integer products."""
    x = x.contiguous()
    out = torch.empty(x.shape[0], x.shape[1], dtype=out_dtype or x.dtype)
    weights, ids = weights.to(torch.float32).contiguous(), ids.to(torch.int64).contiguous()
    moe_packed_call(x, w13, w2, weights, ids, out, limit, weight_first, int8).run()
    return out


def moe_packed_call(
    x: torch.Tensor,
    w13: PackedExperts,
    w2: PackedExperts,
    weights: torch.Tensor,
    ids: torch.Tensor,
    out: torch.Tensor,
    limit: float | None = None,
    weight_first: bool = False,
    int8: bool | None = None,
) -> native.NativeCall:
    """``moe_packed`` into ``out`` [T, H], bound: x contiguous, weights float32 and ids int64 [T, k]."""
    t, h = x.shape
    experts, rows, _ = w13.shape
    inter = rows // 2
    if w13.shape != (experts, 2 * inter, h) or w2.shape != (experts, h, inter) or w2.format != w13.format:
        raise ValueError(f"moe_packed: w13 {w13.shape} and w2 {w2.shape} do not fit x {tuple(x.shape)}")
    if weights.dtype != torch.float32 or ids.dtype != torch.int64 or weights.shape != ids.shape:
        raise ValueError("moe_packed: weights float32 and ids int64 of one shape [T, k]")
    for tensor in (x, weights, ids, out):
        if not tensor.is_contiguous():
            raise ValueError("moe_packed: x, weights, ids and out must be contiguous")
    if out.shape != (t, h):
        raise ValueError(f"moe_packed: out must be [{t}, {h}]")
    (s13, u13), (s2, u2) = _scale(w13.scale), _scale(w2.scale)
    args = (
        t,
        h,
        inter,
        experts,
        ids.shape[1],
        x.data_ptr(),
        w13.weight.data_ptr(),
        s13.data_ptr(),
        u13,
        w2.weight.data_ptr(),
        s2.data_ptr(),
        u2,
        FORMATS[w13.format],
        ids.data_ptr(),
        weights.data_ptr(),
        math.inf if limit is None else limit,
        int(weight_first),
        out.data_ptr(),
        ACTIVATIONS[x.dtype],
        ACTIVATIONS[out.dtype],
        _int8_for(w13.format, int8),
        torch.get_num_threads(),
    )
    keep = (x, w13.weight, s13, w2.weight, s2, weights, ids, out)
    return native.NativeCall("moe_packed", _lib().ca_moe_packed, args, _REASONS, keep)


def dequantize(w: PackedWeight, dtype: torch.dtype) -> torch.Tensor:
    """[N, K] in ``dtype``: the very values ``w.dequantize(dtype)`` gives, decoded natively (the
    products too large for ``linear``: a prefill chunk's, decoded once for the call)."""
    if w.format == "int6":
        return native_int6.dequantize(w.weight, w.scale, w.shape[1], dtype)
    return _decode(w.weight, w.scale, w.format, FP8_BLOCK if w.format == "fp8" else 1, w.shape, dtype)


def dequantize_expert(w: PackedExperts, index: int, dtype: torch.dtype) -> torch.Tensor:
    """Expert ``index`` as ``w.expert(index, dtype)`` gives it, decoded natively."""
    return _decode(w.weight[index], w.scale[index], w.format, 1, w.shape[1:], dtype)


def _decode(
    codes: torch.Tensor,
    scale: torch.Tensor,
    fmt: str,
    rows_per_scale: int,
    shape: tuple[int, ...],
    dtype: torch.dtype,
) -> torch.Tensor:
    n, k = shape
    scale, u8 = _scale(scale)
    out = torch.empty(n, k, dtype=dtype)
    native.calls[f"dequantize_{fmt}"] += 1
    _lib().ca_dequantize_packed(
        n,
        k,
        codes.data_ptr(),
        scale.data_ptr(),
        FORMATS[fmt],
        u8,
        rows_per_scale,
        out.data_ptr(),
        ACTIVATIONS[dtype],
        torch.get_num_threads(),
    )
    return out
