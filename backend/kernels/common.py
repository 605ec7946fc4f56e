"""Helpers shared by the kernels.

Triton's CPU interpreter computes wrongly on bfloat16/float16 values (arithmetic and
``tl.dot``; casts are right), so kernels do elementwise math in float32 and round
explicitly where a reference rounds (``round_to``), and route dots through ``dot``,
which upcasts its operands under the interpreter (``UPCAST``, set by ``upcast()`` on the
host) and feeds the tensor cores the storage dtype on a GPU.
"""

from __future__ import annotations

import triton
import triton.language as tl

from codeagent.backend.kernels.dispatch import interpreting


def upcast() -> bool:
    return interpreting()


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
