"""Weights in 2 MB pages on Linux: fewer TLB misses while a decode step streams them.

Where transparent huge pages are ``madvise`` only (a common default), a model's weights land in
4 KB pages, and a CPU decode step, which streams every weight it reads, then takes a TLB miss
every 4 KB (one bf16 row of a 2048-wide matrix). ``advise`` marks each large CPU tensor's storage
``MADV_HUGEPAGE``; done between the model's construction (``torch.empty``: memory not yet
touched) and the loader's copy, the copy's first touch then allocates 2 MB pages. Measured on
the bench's 151,936 x 2048 bf16 head: 2-4% faster products (``docs/bench/cpu-choices.md``).

Limits: Linux only, and only where ``/sys/kernel/mm/transparent_hugepage/enabled`` is not
``never``; advisory (the kernel may still hand out 4 KB pages, e.g. when memory is fragmented);
only what the model allocates before loading is advised (its parameters and buffers: not the
weights a loader creates as it reads, such as DeepSeek-V4's flat dict), and memory already
touched (tensors made by torch ops after loading: packed weights; a small tensor placed in heap
memory an earlier one freed) is not moved.
``CODEAGENT_HUGE_PAGES=0`` turns it off (for measurements, or a machine where compaction stalls).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

ENV = "CODEAGENT_HUGE_PAGES"
MADV_HUGEPAGE = 14
PAGE = 2 << 20
SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@functools.cache
def _madvise() -> Callable[[int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def available() -> bool:
    """Whether advising can have an effect here: Linux, THP not ``never``, not switched off."""
    if os.environ.get(ENV, "").strip().lower() in ("0", "off", "no", "false"):
        return False
    try:
        setting = SETTING.read_text()
    except OSError:
        return False
    return "[never]" not in setting and _madvise() is not None


def advise(tensors: Iterable[torch.Tensor], minimum: int = 2 * PAGE) -> int:
    """Mark the whole 2 MB pages inside each CPU tensor's storage of at least ``minimum`` bytes
    ``MADV_HUGEPAGE``; the bytes advised (0 where not ``available``). Errors are ignored: it is
    advice."""
    if not available():
        return 0
    madvise = _madvise()
    if madvise is None:
        return 0
    seen: set[int] = set()
    advised = 0
    for tensor in tensors:
        if tensor.device.type != "cpu":
            continue
        storage = tensor.untyped_storage()
        start, size = storage.data_ptr(), storage.nbytes()
        if size < minimum or start in seen:
            continue
        seen.add(start)
        low, high = (start + PAGE - 1) // PAGE * PAGE, (start + size) // PAGE * PAGE
        if high > low and madvise(low, high - low, MADV_HUGEPAGE) == 0:
            advised += high - low
    return advised
