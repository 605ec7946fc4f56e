"""Native CPU kernels (``native.c``) for decode: whole MoE layers, paged decode attention,
RMSNorm, Qwen3's per-head norm with rotary, and small bfloat16 linear layers.

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
from codeagent.backend.kernels.native_build import NativeError as NativeError
from codeagent.backend.kernels.native_build import Signatures as Signatures
from codeagent.backend.kernels.native_build import build as build
from codeagent.backend.kernels.native_build import cache_folder as cache_folder
from codeagent.backend.kernels.native_build import calls as calls
from codeagent.backend.kernels.native_build import check as check

SOURCE = Path(__file__).with_name("native.c")
MAX_ROWS = 64  # token rows a call takes; larger batches are compute-bound and go to the BLAS
MAX_PAIRS = 512  # token-expert pairs in one MoE call (native.c's MAX_PAIRS)
DTYPES = {torch.float32: 0, torch.bfloat16: 1}


_I, _L, _F, _P = ctypes.c_int, ctypes.c_long, ctypes.c_float, ctypes.c_void_p
_SIGNATURES: Signatures = {  # native.c's entry points: result, arguments
    "ca_linear": (_I, [_I, _I, _I, _P, _P, _P, _I, _I]),
    "ca_moe": (_I, [_I, _I, _I, _I, _I, _P, _P, _P, _P, _P, _P, _I, _I]),
    "ca_decode_attention": (_I, [_I, _I, _I, _I, _P, _P, _P, _P, _P, _P, _I, _I, _P, _P, _F, _I, _I]),
    "ca_rms_norm": (None, [_L, _I, _P, _P, _P, _F, _I, _I]),
    "ca_norm_rope": (None, [_I, _I, _I, _P, _L, _P, _P, _P, _P, _F, _I, _I]),
    "ca_has_pairs": (_I, []),
}


LIBRARY = Library(SOURCE, _SIGNATURES)
_lib = LIBRARY.lib


def problem() -> str | None:
    """Why the native kernels are unavailable here, or None (builds them on first call)."""
    return LIBRARY.problem()


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
    t, k = x.shape
    n = weight.shape[0]
    if weight.shape[1] != k:
        raise ValueError(f"linear: x has {k} columns, weight {tuple(weight.shape)}")
    x = x.contiguous()
    out = torch.empty(t, n, dtype=x.dtype)
    calls["linear"] += 1
    status = _lib().ca_linear(
        t, k, n, x.data_ptr(), weight.data_ptr(), out.data_ptr(), DTYPES[x.dtype], torch.get_num_threads()
    )
    check("ca_linear", status, {-1: "out of memory", -3: f"more than {MAX_ROWS} rows"})
    return out


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
    t, h = x.shape
    experts, inter = w13.shape[0], w2.shape[2]
    if w13.shape[1:] != (2 * inter, h) or w2.shape != (experts, h, inter):
        raise ValueError(
            f"moe: w13 {tuple(w13.shape)} and w2 {tuple(w2.shape)} do not fit x {tuple(x.shape)}"
        )
    x = x.contiguous()
    ids = ids.to(torch.int64).contiguous()
    weights = weights.to(torch.float32).contiguous()
    out = torch.empty_like(x)
    calls["moe"] += 1
    status = _lib().ca_moe(
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
    check(
        "ca_moe",
        status,
        {-1: "out of memory", -2: "an expert id out of range", -3: "too many token-expert pairs"},
    )
    return out


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
    q, k_new, v_new = q.contiguous(), k_new.contiguous(), v_new.contiguous()
    tables = tables.to(torch.int64).contiguous()
    lengths = lengths.to(torch.int64).contiguous()
    out = torch.empty_like(q)
    calls["decode_attention"] += 1
    status = _lib().ca_decode_attention(
        b,
        heads,
        kv_heads,
        d,
        q.data_ptr(),
        k_new.data_ptr(),
        v_new.data_ptr(),
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
    check("ca_decode_attention", status, {-1: "out of memory", -2: "more than 16 query heads a KV head"})
    return out


def fits_rms_norm(x: torch.Tensor, weight: torch.Tensor | None) -> bool:
    return x.dtype in DTYPES and x.device.type == "cpu" and (weight is None or weight.dtype == x.dtype)


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """RMSNorm over the last dimension, as ``layers.norm.rms_norm``."""
    dim = x.shape[-1]
    if weight is not None and weight.shape != (dim,):
        raise ValueError(f"rms_norm: weight {tuple(weight.shape)} for rows of {dim}")
    x = x.contiguous()
    out = torch.empty_like(x)
    calls["rms_norm"] += 1
    _lib().ca_rms_norm(
        x.numel() // dim if dim else 0,
        dim,
        x.data_ptr(),
        None if weight is None else weight.contiguous().data_ptr(),
        out.data_ptr(),
        eps,
        DTYPES[x.dtype],
        torch.get_num_threads(),
    )
    return out


MAX_HEAD_DIM = 1024  # native.c's row buffer in ca_norm_rope


def fits_norm_rope(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        x.dim() == 2
        and x.dtype in DTYPES
        and weight.dtype == x.dtype
        and x.device.type == "cpu"
        and x.stride(1) == 1
        and 0 < weight.shape[0] <= MAX_HEAD_DIM
        and weight.shape[0] % 2 == 0
        and x.shape[1] % weight.shape[0] == 0
    )


def norm_rope(
    x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, eps: float
) -> torch.Tensor:
    """Per-head RMSNorm, then rotary ("rotate half"): x [T, heads * D] (rows may be strided, as a
    column slice of a fused projection), weight [D], cos/sin [T, D] float32 -> [T, heads, D];
    as ``apply_rotary(rms_norm(x.view(T, heads, D), weight, eps), cos, sin)``."""
    t, width = x.shape
    d = weight.shape[0]
    if cos.shape != (t, d) or sin.shape != (t, d) or cos.dtype != torch.float32 or sin.dtype != torch.float32:
        raise ValueError(f"norm_rope: cos/sin must be float32 [{t}, {d}]")
    cos, sin, weight = cos.contiguous(), sin.contiguous(), weight.contiguous()
    out = torch.empty(t, width // d, d, dtype=x.dtype)
    calls["norm_rope"] += 1
    _lib().ca_norm_rope(
        t,
        width // d,
        d,
        x.data_ptr(),
        x.stride(0),
        weight.data_ptr(),
        cos.data_ptr(),
        sin.data_ptr(),
        out.data_ptr(),
        eps,
        DTYPES[x.dtype],
        torch.get_num_threads(),
    )
    return out
