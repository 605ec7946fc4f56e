"""Native CPU kernels over rows (``native_rows.c``): the small work of a decode step between its
products. RMSNorm (``rms_norm``, and ``add_rms_norm``: the residual add with the norm after it),
Qwen3's per-head norm with rotary (``norm_rope``) and softmax top-k routing (``softmax_topk``).

Each has a bound form (``*_call``: a ``NativeCall`` into caller-given outputs) that a decode
program (``models/qwen3_moe/decode_program.py``) runs again every step. ``native`` re-exports
these (the layers reach them as ``kernels.native``) and folds this library's ``problem()`` into
its own.

Numerics: float32 or bfloat16, each row in a fixed order, rounded where the torch references
round (``layers/norm.py``, ``layers/rotary.py``); the router sums its exponentials in expert
order and picks equal probabilities lower id first, so it is not bit-identical to
``torch.softmax`` + ``torch.topk`` (a last-bit difference), but it is the same for a row
whatever batch it is in. Limits: head sizes up to ``MAX_HEAD_DIM`` (even), up to
``MAX_EXPERTS`` experts a router row.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from codeagent.backend.kernels.native_build import Library, NativeCall, Signatures

SOURCE = Path(__file__).with_name("native_rows.c")
DTYPES = {torch.float32: 0, torch.bfloat16: 1}
MAX_HEAD_DIM = 1024  # native_rows.c's row buffer in ca_norm_rope
MAX_EXPERTS = 1024  # native_rows.c's MAX_EXPERTS

_I, _L, _F, _P = ctypes.c_int, ctypes.c_long, ctypes.c_float, ctypes.c_void_p
SIGNATURES: Signatures = {  # native_rows.c's entry points: result, arguments
    "ca_rms_norm": (None, [_L, _I, _P, _P, _P, _F, _I, _I]),
    "ca_add_rms_norm": (None, [_L, _I, _P, _P, _P, _P, _P, _F, _I, _I]),
    "ca_norm_rope": (None, [_I, _I, _I, _P, _L, _P, _P, _P, _P, _F, _I, _I]),
    "ca_softmax_topk": (_I, [_L, _I, _I, _P, _I, _P, _P, _I, _I]),
}

LIBRARY = Library(SOURCE, SIGNATURES)
_lib = LIBRARY.lib


def problem() -> str | None:
    """Why these kernels are unavailable here, or None (builds them on first call)."""
    return LIBRARY.problem()


def _contiguous(kernel: str, **tensors: torch.Tensor) -> None:
    for name, tensor in tensors.items():
        if not tensor.is_contiguous():
            raise ValueError(f"{kernel}: {name} must be contiguous")


def fits_rms_norm(x: torch.Tensor, weight: torch.Tensor | None) -> bool:
    return x.dtype in DTYPES and x.device.type == "cpu" and (weight is None or weight.dtype == x.dtype)


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    """RMSNorm over the last dimension, as ``layers.norm.rms_norm``."""
    x = x.contiguous()
    out = torch.empty_like(x)
    rms_norm_call(x, None if weight is None else weight.contiguous(), eps, out).run()
    return out


def rms_norm_call(x: torch.Tensor, weight: torch.Tensor | None, eps: float, out: torch.Tensor) -> NativeCall:
    """``rms_norm`` into ``out`` (x's shape and dtype), bound; x, weight, out contiguous."""
    dim = x.shape[-1]
    if weight is not None and weight.shape != (dim,):
        raise ValueError(f"rms_norm: weight {tuple(weight.shape)} for rows of {dim}")
    if out.shape != x.shape or out.dtype != x.dtype:
        raise ValueError("rms_norm: out must have x's shape and dtype")
    _contiguous("rms_norm", x=x, out=out, **({} if weight is None else {"weight": weight}))
    args = (
        x.numel() // dim if dim else 0,
        dim,
        x.data_ptr(),
        None if weight is None else weight.data_ptr(),
        out.data_ptr(),
        eps,
        DTYPES[x.dtype],
        torch.get_num_threads(),
    )
    return NativeCall("rms_norm", _lib().ca_rms_norm, args, None, (x, weight, out))


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """x, residual [T, D] -> (RMSNorm(residual + x), residual + x), as ``layers.norm.add_rms_norm``
    computes them (the sum rounded to x's dtype, then normalised)."""
    x, residual = x.contiguous(), residual.contiguous()
    summed, out = torch.empty_like(x), torch.empty_like(x)
    add_rms_norm_call(x, residual, weight.contiguous(), eps, summed, out).run()
    return out, summed


def add_rms_norm_call(
    x: torch.Tensor,
    residual: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    summed: torch.Tensor,
    out: torch.Tensor,
) -> NativeCall:
    """``add_rms_norm`` into ``summed`` (which may be ``residual`` itself) and ``out``, bound."""
    dim = x.shape[-1]
    for name, tensor in (("residual", residual), ("summed", summed), ("out", out)):
        if tensor.shape != x.shape or tensor.dtype != x.dtype:
            raise ValueError(f"add_rms_norm: {name} must have x's shape and dtype")
    if weight.shape != (dim,) or weight.dtype != x.dtype:
        raise ValueError(f"add_rms_norm: weight {tuple(weight.shape)} for rows of {dim}")
    _contiguous("add_rms_norm", x=x, residual=residual, weight=weight, summed=summed, out=out)
    args = (
        x.numel() // dim if dim else 0,
        dim,
        x.data_ptr(),
        residual.data_ptr(),
        weight.data_ptr(),
        summed.data_ptr(),
        out.data_ptr(),
        eps,
        DTYPES[x.dtype],
        torch.get_num_threads(),
    )
    return NativeCall("add_rms_norm", _lib().ca_add_rms_norm, args, None, (x, residual, weight, summed, out))


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
    out = torch.empty(t, width // d, d, dtype=x.dtype)
    norm_rope_call(x, weight.contiguous(), cos.contiguous(), sin.contiguous(), eps, out).run()
    return out


def norm_rope_call(
    x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, eps: float, out: torch.Tensor
) -> NativeCall:
    """``norm_rope`` into ``out`` [T, heads, D], bound (weight, cos, sin, out contiguous)."""
    t, width = x.shape
    d = weight.shape[0]
    if cos.shape != (t, d) or sin.shape != (t, d) or cos.dtype != torch.float32 or sin.dtype != torch.float32:
        raise ValueError(f"norm_rope: cos/sin must be float32 [{t}, {d}]")
    if not fits_norm_rope(x, weight) or out.shape != (t, width // d, d) or out.dtype != x.dtype:
        raise ValueError(f"norm_rope: x {tuple(x.shape)}, weight {tuple(weight.shape)} and out do not fit")
    _contiguous("norm_rope", weight=weight, cos=cos, sin=sin, out=out)
    args = (
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
    return NativeCall("norm_rope", _lib().ca_norm_rope, args, None, (x, weight, cos, sin, out))


def fits_softmax_topk(logits: torch.Tensor, k: int) -> bool:
    return (
        logits.dim() == 2
        and logits.dtype in DTYPES
        and logits.device.type == "cpu"
        and 0 < k <= logits.shape[1] <= MAX_EXPERTS
    )


def softmax_topk(logits: torch.Tensor, k: int, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [T, E] -> weights [T, k] (in logits' dtype), expert ids [T, k] int64, as
    ``layers.moe.softmax_topk`` (up to the last bit, see the module's docstring)."""
    logits = logits.contiguous()
    t = logits.shape[0]
    weights, ids = torch.empty(t, k, dtype=torch.float32), torch.empty(t, k, dtype=torch.int64)
    softmax_topk_call(logits, k, normalize, weights, ids).run()
    return weights.to(logits.dtype), ids


def softmax_topk_call(
    logits: torch.Tensor, k: int, normalize: bool, weights: torch.Tensor, ids: torch.Tensor
) -> NativeCall:
    """``softmax_topk`` into ``weights`` [T, k] float32 (holding values of logits' dtype: what
    ``native.moe`` takes) and ``ids`` [T, k] int64, bound."""
    t, experts = logits.shape
    if not fits_softmax_topk(logits, k):
        raise ValueError(f"softmax_topk: logits {tuple(logits.shape)} with k {k}")
    if (
        weights.shape != (t, k)
        or ids.shape != (t, k)
        or weights.dtype != torch.float32
        or ids.dtype != torch.int64
    ):
        raise ValueError(f"softmax_topk: weights float32 and ids int64 [{t}, {k}]")
    _contiguous("softmax_topk", logits=logits, weights=weights, ids=ids)
    args = (
        t,
        experts,
        k,
        logits.data_ptr(),
        int(normalize),
        weights.data_ptr(),
        ids.data_ptr(),
        DTYPES[logits.dtype],
        torch.get_num_threads(),
    )
    reasons = {-2: f"k {k} of {experts} experts"}
    return NativeCall("softmax_topk", _lib().ca_softmax_topk, args, reasons, (logits, weights, ids))
