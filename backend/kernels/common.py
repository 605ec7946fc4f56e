"""Helpers shared by the kernels.

Triton's CPU interpreter computes wrongly on bfloat16/float16 values (arithmetic and
``tl.dot``; casts are right), so kernels do elementwise math in float32 and round
explicitly where a reference rounds (``round_to``), and route dots through ``dot``,
which upcasts its operands under the interpreter (``UPCAST``, set by ``upcast()`` on the
host) and feeds the tensor cores the storage dtype on a GPU.

``INTERPRETING`` is read once, when the kernels are first imported: that is when Triton
itself decides (at decoration time), so the host code sizes tiles for the mode the kernels
actually run in, with no environment read per launch.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"


def upcast() -> bool:
    return INTERPRETING


@triton.jit
def round_to(x, dtype: tl.constexpr):
    """x (float32) rounded to dtype and back, as a reference computing in dtype would."""
    return x.to(dtype).to(tl.float32)


@triton.jit
def dot(a, b, acc, UPCAST: tl.constexpr):
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    return tl.dot(a, b, acc, input_precision="ieee")


def next_pow2(n: int, floor: int = 1) -> int:
    return max(floor, triton.next_power_of_2(n))
