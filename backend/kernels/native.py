"""Native CPU kernels (``native.c``) for decode: whole MoE layers, paged decode attention and
small bfloat16 / float32 linear layers; and, re-exported from ``native_rows`` (its own source and
library), RMSNorm, the residual add with the norm, Qwen3's per-head norm with rotary and the
router's softmax top-k. Each kernel also has a bound form (``*_call``: a ``NativeCall`` into
caller-given outputs) that a decode program (``models/qwen3_moe/decode_program.py``) replays every step.

Built on first use with the machine's C compiler (``native_build``: the cache folder, the key,
the OpenMP runtime shared with PyTorch), as are the kernels over packed weights
(``native_packed``, ``native_int6``) and linear attention's (``native_recurrent``).

Where no compiler works, ``problem()`` says why and the layers run their torch references
(``dispatch.choose`` decides, once per model; ``generate``, ``serve`` and the engine bench say which
ran). Limits: float32 and bfloat16 only, inner dimensions a multiple of 16 (head sizes up to
256, up to 16 query heads a KV head), at most ``MAX_ROWS`` token rows for the products (decode
batches; prefill is compute-bound and stays with the BLAS). The ``fits_*`` checks send
anything else to the references.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch

# the build machinery is part of this module's interface (the other kernel modules and tests use it)
from codeagent.backend.kernels.native_build import FLAGS as FLAGS
from codeagent.backend.kernels.native_build import Library as Library
from codeagent.backend.kernels.native_build import NativeCall as NativeCall
from codeagent.backend.kernels.native_build import NativeError as NativeError
from codeagent.backend.kernels.native_build import Signatures as Signatures
from codeagent.backend.kernels.native_build import build as build
from codeagent.backend.kernels.native_build import cache_folder as cache_folder
from codeagent.backend.kernels.native_build import calls as calls
from codeagent.backend.kernels.native_build import check as check

# the row kernels (native_rows.c) are part of this module's interface (the layers ask ``kernels.native``)
from codeagent.backend.kernels.native_rows import MAX_HEAD_DIM as MAX_HEAD_DIM
from codeagent.backend.kernels.native_rows import add_rms_norm as add_rms_norm
from codeagent.backend.kernels.native_rows import add_rms_norm_call as add_rms_norm_call
from codeagent.backend.kernels.native_rows import fits_norm_rope as fits_norm_rope
from codeagent.backend.kernels.native_rows import fits_rms_norm as fits_rms_norm
from codeagent.backend.kernels.native_rows import fits_softmax_topk as fits_softmax_topk
from codeagent.backend.kernels.native_rows import norm_rope as norm_rope
from codeagent.backend.kernels.native_rows import norm_rope_call as norm_rope_call
from codeagent.backend.kernels.native_rows import problem as rows_problem
from codeagent.backend.kernels.native_rows import rms_norm as rms_norm
from codeagent.backend.kernels.native_rows import rms_norm_call as rms_norm_call
from codeagent.backend.kernels.native_rows import softmax_topk as softmax_topk
from codeagent.backend.kernels.native_rows import softmax_topk_call as softmax_topk_call

SOURCE = Path(__file__).with_name("native.c")
MAX_ROWS = 64  # token rows a call takes; larger batches are compute-bound and go to the BLAS
MAX_PAIRS = 512  # token-expert pairs in one MoE call (native.c's MAX_PAIRS)
DTYPES = {torch.float32: 0, torch.bfloat16: 1}


_I, _L, _F, _P = ctypes.c_int, ctypes.c_long, ctypes.c_float, ctypes.c_void_p
_SIGNATURES: Signatures = {  # native.c's entry points: result, arguments
    "ca_linear": (_I, [_I, _I, _I, _P, _P, _P, _I, _I]),
    "ca_moe": (_I, [_I, _I, _I, _I, _I, _P, _P, _P, _P, _P, _P, _I, _I]),
    "ca_decode_attention": (_I, [_I, _I, _I, _I, _P, _P, _L, _P, _L, _P, _P, _P, _I, _I, _P, _P, _F, _I, _I]),
    "ca_has_pairs": (_I, []),
}


LIBRARY = Library(SOURCE, _SIGNATURES)
_lib = LIBRARY.lib


def problem() -> str | None:
    """Why the native kernels are unavailable here, or None (builds them, and the row kernels'
    library, on first call)."""
    return LIBRARY.problem() or rows_problem()


@functools.cache
def bf16_pairs() -> bool:
    """Whether bfloat16 products multiply bf16 by bf16 in pairs (AVX512-BF16 where the build
    found it): twice the float32 route's arithmetic, so they beat the BLAS up to 8 rows."""
    return bool(_lib().ca_has_pairs())


def fits_linear(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``linear`` takes this product: CPU, one dtype it knows, decode-sized."""
    return (
        x.dim() == 2
        and x.dtype in DTYPES
        and weight.dtype == x.dtype
        and x.device.type == "cpu"
        and weight.device.type == "cpu"
        and 0 < x.shape[0] <= MAX_ROWS
        and x.shape[1] % 16 == 0
        and weight.is_contiguous()
    )


def linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x [T, K] @ weight [N, K]^T -> [T, N] (``F.linear`` without bias)."""
    x = x.contiguous()
    out = torch.empty(x.shape[0], weight.shape[0], dtype=x.dtype)
    linear_call(x, weight, out).run()
    return out


def linear_call(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> NativeCall:
    """``linear`` into ``out`` [T, N], bound (x contiguous)."""
    t, k = x.shape
    n = weight.shape[0]
    if weight.shape[1] != k:
        raise ValueError(f"linear: x has {k} columns, weight {tuple(weight.shape)}")
    _check_out("linear", x, out, (t, n))
    args = (
        t,
        k,
        n,
        x.data_ptr(),
        weight.data_ptr(),
        out.data_ptr(),
        DTYPES[x.dtype],
        torch.get_num_threads(),
    )
    reasons = {-1: "out of memory", -3: f"more than {MAX_ROWS} rows"}
    return NativeCall("linear", _lib().ca_linear, args, reasons, (x, weight, out))


def _check_out(kernel: str, x: torch.Tensor, out: torch.Tensor, shape: tuple[int, ...]) -> None:
    """A bound call's input and output must be contiguous, the output of the shape and dtype."""
    if not x.is_contiguous() or not out.is_contiguous() or out.shape != shape or out.dtype != x.dtype:
        raise ValueError(f"{kernel}: x and out must be contiguous, out {x.dtype} {list(shape)}")


def fits_moe(x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, ids: torch.Tensor) -> bool:
    return (
        x.dim() == 2
        and x.dtype in DTYPES
        and w13.dtype == x.dtype
        and w2.dtype == x.dtype
        and x.device.type == "cpu"
        and w13.device.type == "cpu"
        and 0 < x.shape[0] <= MAX_ROWS
        and ids.numel() <= MAX_PAIRS
        and x.shape[1] % 16 == 0
        and w2.shape[2] % 16 == 0
        and w13.is_contiguous()
        and w2.is_contiguous()
    )


def moe(
    x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    """One sparse MoE layer, as ``layers.moe.experts_forward``: x [T, H]; w13 [E, 2I, H];
    w2 [E, H, I]; weights, ids [T, k] -> [T, H]."""
    x = x.contiguous()
    out = torch.empty_like(x)
    moe_call(x, w13, w2, weights.to(torch.float32).contiguous(), ids.to(torch.int64).contiguous(), out).run()
    return out


def moe_call(
    x: torch.Tensor,
    w13: torch.Tensor,
    w2: torch.Tensor,
    weights: torch.Tensor,
    ids: torch.Tensor,
    out: torch.Tensor,
) -> NativeCall:
    """``moe`` into ``out``, bound: weights float32 and ids int64 [T, k], contiguous."""
    t, h = x.shape
    experts, inter = w13.shape[0], w2.shape[2]
    if w13.shape[1:] != (2 * inter, h) or w2.shape != (experts, h, inter):
        raise ValueError(
            f"moe: w13 {tuple(w13.shape)} and w2 {tuple(w2.shape)} do not fit x {tuple(x.shape)}"
        )
    _check_out("moe", x, out, (t, h))
    if weights.dtype != torch.float32 or ids.dtype != torch.int64 or weights.shape != ids.shape:
        raise ValueError("moe: weights float32 and ids int64 of one shape [T, k]")
    if not (weights.is_contiguous() and ids.is_contiguous()):
        raise ValueError("moe: weights and ids must be contiguous")
    args = (
        t,
        h,
        inter,
        experts,
        ids.shape[1],
        x.data_ptr(),
        w13.data_ptr(),
        w2.data_ptr(),
        ids.data_ptr(),
        weights.data_ptr(),
        out.data_ptr(),
        DTYPES[x.dtype],
        torch.get_num_threads(),
    )
    reasons = {-1: "out of memory", -2: "an expert id out of range", -3: "too many token-expert pairs"}
    return NativeCall("moe", _lib().ca_moe, args, reasons, (x, w13, w2, weights, ids, out))


def fits_decode_attention(q: torch.Tensor, k_pool: torch.Tensor) -> bool:
    return (
        q.dtype in DTYPES
        and k_pool.dtype == q.dtype
        and q.device.type == "cpu"
        and q.shape[-1] % 16 == 0
        and q.shape[-1] <= 256
        and q.shape[1] <= 16 * k_pool.shape[1]
        and k_pool.is_contiguous()
    )


def decode_attention(
    q: torch.Tensor,
    k_new: torch.Tensor,
    v_new: torch.Tensor,
    k_pool: torch.Tensor,
    v_pool: torch.Tensor,
    tables: torch.Tensor,
    per_block: int,
    lengths: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """One decode token per sequence over a paged pool: writes each sequence's new key and value
    row (k_new, v_new [B, KVH, D]) at row ``lengths[s] - 1`` of its blocks (``tables`` [B, max
    blocks] int64, ``per_block`` rows a block), then attends q [B, H, D] over rows
    0..lengths[s]-1 -> [B, H, D]. Pools are [rows, KVH, D]."""
    q, k_new, v_new = q.contiguous(), _rows_contiguous(k_new), _rows_contiguous(v_new)
    out = torch.empty_like(q)
    tables, lengths = tables.to(torch.int64).contiguous(), lengths.to(torch.int64).contiguous()
    decode_attention_call(q, k_new, v_new, k_pool, v_pool, tables, per_block, lengths, scale, out).run()
    return out


def _rows_contiguous(t: torch.Tensor) -> torch.Tensor:
    """t [B, ...] whose every row is contiguous (rows may be apart: the kernel takes their stride)."""
    return t if t.shape[0] == 0 or t[0].is_contiguous() else t.contiguous()


def decode_attention_call(
    q: torch.Tensor,
    k_new: torch.Tensor,
    v_new: torch.Tensor,
    k_pool: torch.Tensor,
    v_pool: torch.Tensor,
    tables: torch.Tensor,
    per_block: int,
    lengths: torch.Tensor,
    scale: float,
    out: torch.Tensor,
) -> NativeCall:
    """``decode_attention`` into ``out``, bound: q contiguous; k_new and v_new [B, KVH, D] with
    each row contiguous (rows may be apart: a column slice of a fused projection); tables and
    lengths int64 and contiguous (a bound call reads them as they are when it runs)."""
    b, heads, d = q.shape
    kv_heads = k_pool.shape[1]
    if v_pool.shape != k_pool.shape or k_new.shape != (b, kv_heads, d) or v_new.shape != k_new.shape:
        raise ValueError("decode_attention: q, the new rows and the pools do not fit together")
    if heads % kv_heads:
        raise ValueError(f"decode_attention: {heads} heads do not group over {kv_heads} KV heads")
    if not (k_pool.is_contiguous() and v_pool.is_contiguous()) or d % 16 or d > 256:
        raise ValueError(
            "decode_attention: the pools must be contiguous, the head size a multiple of 16 up to 256"
        )
    if v_pool.dtype != q.dtype or k_pool.dtype != q.dtype:
        raise ValueError("decode_attention: q and the pools must share a dtype")
    for name, tensor in (("q", q), ("tables", tables), ("lengths", lengths)):
        if not tensor.is_contiguous():
            raise ValueError(f"decode_attention: {name} must be contiguous")
    for name, tensor in (("k_new", k_new), ("v_new", v_new)):
        if tensor.shape[0] and not tensor[0].is_contiguous():
            raise ValueError(f"decode_attention: each row of {name} must be contiguous")
    if tables.dtype != torch.int64 or lengths.dtype != torch.int64 or tables.shape[0] != q.shape[0]:
        raise ValueError("decode_attention: tables [B, width] and lengths [B] int64")
    _check_out("decode_attention", q, out, tuple(q.shape))
    args = (
        b,
        heads,
        kv_heads,
        d,
        q.data_ptr(),
        k_new.data_ptr(),
        k_new.stride(0),
        v_new.data_ptr(),
        v_new.stride(0),
        k_pool.data_ptr(),
        v_pool.data_ptr(),
        tables.data_ptr(),
        tables.shape[1],
        per_block,
        lengths.data_ptr(),
        out.data_ptr(),
        scale,
        DTYPES[q.dtype],
        torch.get_num_threads(),
    )
    reasons = {-1: "out of memory", -2: "more than 16 query heads a KV head"}
    keep = (q, k_new, v_new, k_pool, v_pool, tables, lengths, out)
    return NativeCall("decode_attention", _lib().ca_decode_attention, args, reasons, keep)
