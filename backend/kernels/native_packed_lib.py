"""The packed-weight kernels' library (``native_packed.c``): its entry points, its build, and
the switches the products share: whether the build multiplies bf16 in pairs (``bf16_pairs``),
whether FP4 products take int8 activations (``int8_built``, ``int8``, ``int8_asked``,
``set_int8``, ``CODEAGENT_FP4_INT8``), and how scales are read (``scale_view``). The products
themselves, and this module's public names, are ``native_packed``'s.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import torch

from codeagent.backend.kernels import native

SOURCE = Path(__file__).with_name("native_packed.c")
FORMATS = {"fp8": 0, "fp4": 1}
INT8_ENV = "CODEAGENT_FP4_INT8"  # auto (default: int8 activations for FP4 where built, INT6) or off
_INT8: list[bool] = []  # int8_asked()'s answer, once read

_I, _F, _P = ctypes.c_int, ctypes.c_float, ctypes.c_void_p
SIGNATURES: native.Signatures = {  # native_packed.c's entry points: result, arguments
    "ca_linear_packed": (_I, [_I, _I, _I, _P, _P, _P, _I, _I, _I, _P, _I, _I, _I, _I]),
    "ca_moe_packed": (
        _I,
        [_I, _I, _I, _I, _I, _P, _P, _P, _I, _P, _P, _I, _I, _P, _P, _F, _I, _P, _I, _I, _I, _I],
    ),
    "ca_dequantize_packed": (None, [_I, _I, _P, _P, _I, _I, _I, _P, _I, _I]),
    "ca_packed_pairs": (_I, []),
    "ca_packed_int8": (_I, []),
}
REASONS = {-1: "out of memory", -2: "an expert id out of range", -3: "too many token rows or pairs"}


LIBRARY = native.Library(SOURCE, SIGNATURES)
lib = LIBRARY.lib


def problem() -> str | None:
    """Why the packed kernels are unavailable here, or None (builds them on first call)."""
    return LIBRARY.problem()


def bf16_pairs() -> bool:
    """Whether products with bfloat16 activations (K a multiple of 32) decode the weights to
    bfloat16 and multiply in pairs (AVX512-BF16 where the build found it); a MoE layer's
    activations between its projections are then rounded to bfloat16."""
    return bool(lib().ca_packed_pairs())


def int8_built() -> bool:
    """Whether this build has the FP4 products with int8 activations (AVX512-VNNI and -VBMI)."""
    return bool(lib().ca_packed_int8())


def int8() -> bool:
    """Whether FP4 products take int8 activations when a call does not say: where built, unless
    switched off (``int8_asked``)."""
    return int8_asked() and int8_built()


def int8_asked() -> bool:
    """Whether packed products take int8 activations when a call does not say (INT6 ones always
    can: ``native_int6``'s portable route): unless ``CODEAGENT_FP4_INT8=off`` (read once, on the
    first call) or ``set_int8`` said otherwise."""
    if not _INT8:
        value = os.environ.get(INT8_ENV, "").strip().lower() or "auto"
        if value not in ("auto", "off"):
            raise ValueError(f"{INT8_ENV}={value!r}: expected auto or off")
        _INT8.append(value == "auto")
    return _INT8[0]


def set_int8(on: bool | None) -> None:
    """The default for calls that do not say (``int8``): True (where built), False (the float
    route), or None (back to ``CODEAGENT_FP4_INT8``'s). For benches comparing both routes."""
    _INT8.clear()
    if on is not None:
        _INT8.append(on)


def int8_for(fmt: str, asked: bool | None) -> int:
    if fmt != "fp4":
        return 0
    return int((int8() if asked is None else asked) and int8_built())


def scale_view(scale: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(the scale as the kernels read it, 1 for UE8M0 bytes / 0 for float32)."""
    if scale.dtype == torch.float32:
        return scale.contiguous(), 0
    return scale.view(torch.uint8).contiguous(), 1
