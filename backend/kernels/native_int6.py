"""Native CPU products over INT6 weights (``native_int6.c``; the format is ``quant_int6``'s):
``linear`` for decode-sized products (activations quantized to int8 per 32 inputs, integer dot
products with AVX512-VNNI, a portable C route giving the same bits elsewhere; or, with
``route`` "float", float32 activations against the decoded weights, plain C, several times
slower), ``dequantize`` for the products too large for it. ``native_packed`` dispatches INT6
``PackedWeight``s here, with its ``int8_asked()`` switch (``CODEAGENT_FP4_INT8``), so the layers
see one packed-kernel module and one switch.

Built and loaded by ``native_build`` as the other kernel sources are. Limits: at most
``MAX_ROWS`` token rows, K a multiple of 128 (``packed_fits.fits_linear`` says; anything else
goes to the reference: decoded, then ``F.linear``). The result differs from the reference
by the activations' rounding to int8 (at most 1/254 of each group's largest magnitude an input)
and float32 rounding; a row's result does not depend on the batch it is in.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from codeagent.backend.kernels import native

SOURCE = Path(__file__).with_name("native_int6.c")
MAX_ROWS = 64  # native_int6.c's MAX_ROWS
ACTIVATIONS = {torch.float32: 0, torch.bfloat16: 1}

_I, _P = ctypes.c_int, ctypes.c_void_p
SIGNATURES: native.Signatures = {
    "ca_linear_int6": (_I, [_I, _I, _I, _P, _P, _P, _P, _I, _I, _I, _I]),
    "ca_dequantize_int6": (None, [_I, _I, _P, _P, _P, _I, _I]),
    "ca_int6_vector": (_I, []),
}
ROUTES = {"float": 0, "int8-portable": 1, "int8": 2}
_REASONS = {-1: "out of memory", -3: "too many token rows", -4: "K not a multiple of 128"}


LIBRARY = native.Library(SOURCE, SIGNATURES)
_lib = LIBRARY.lib


def problem() -> str | None:
    """Why the INT6 kernels are unavailable here, or None (builds them on first call)."""
    return LIBRARY.problem()


def vector_built() -> bool:
    """Whether this build multiplies with AVX512-VNNI (else the portable route, same bits)."""
    return bool(_lib().ca_int6_vector())


def _fits_codes(codes: torch.Tensor, scale: torch.Tensor) -> bool:
    return (
        codes.device.type == "cpu"
        and codes.dtype == torch.uint8
        and codes.is_contiguous()
        and scale.dtype == torch.float16
        and scale.is_contiguous()
    )


def fits_weight(codes: torch.Tensor, scale: torch.Tensor) -> bool:
    """Whether the kernels take these codes and scales (the activations: ``packed_fits``)."""
    return _fits_codes(codes, scale) and problem() is None


def linear(
    x: torch.Tensor,
    codes: torch.Tensor,
    scale: torch.Tensor,
    k: int,
    out_dtype: torch.dtype | None = None,
    route: str = "int8",
) -> torch.Tensor:
    """x [T, K] @ W^T -> [T, N] in ``out_dtype`` (default x's) for INT6 codes [N, K / 128 * 96]
    and float16 scales [N, K / 32]; ``route`` (``ROUTES``): int8 (vectorised where built),
    int8-portable (the same bits in plain C, for tests) or float."""
    x = x.contiguous()
    out = torch.empty(x.shape[0], codes.shape[0], dtype=out_dtype or x.dtype)
    linear_call(x, codes, scale, k, out, route).run()
    return out


def linear_call(
    x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor, k: int, out: torch.Tensor, route: str = "int8"
) -> native.NativeCall:
    """``linear`` into ``out`` [T, N] (x contiguous), bound."""
    t = x.shape[0]
    if x.shape[1] != k:
        raise ValueError(f"linear_int6: x has {x.shape[1]} columns, the weight {k}")
    n = codes.shape[0]
    if not x.is_contiguous() or not out.is_contiguous() or out.shape != (t, n):
        raise ValueError(f"linear_int6: x and out [{t}, {n}] must be contiguous")
    args = (
        t,
        k,
        n,
        x.data_ptr(),
        codes.data_ptr(),
        scale.data_ptr(),
        out.data_ptr(),
        ACTIVATIONS[x.dtype],
        ACTIVATIONS[out.dtype],
        ROUTES[route],
        torch.get_num_threads(),
    )
    return native.NativeCall("linear_int6", _lib().ca_linear_int6, args, _REASONS, (x, codes, scale, out))


def dequantize(codes: torch.Tensor, scale: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    """[N, K] in ``dtype``: the values ``quant_int6.dequantize_int6`` gives, decoded natively."""
    n = codes.shape[0]
    out = torch.empty(n, k, dtype=dtype)
    native.calls["dequantize_int6"] += 1
    _lib().ca_dequantize_int6(
        n, k, codes.data_ptr(), scale.data_ptr(), out.data_ptr(), ACTIVATIONS[dtype], torch.get_num_threads()
    )
    return out
